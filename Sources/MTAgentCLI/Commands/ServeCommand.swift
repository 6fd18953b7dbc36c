import ArgumentParser
import Logging
import Metrics
import MTAgentLinux
import MTAgentReplication
import MTAgentService
import MTAgentSetup
import NIOCore
import Prometheus
import Synchronization

/// `mt-agent serve`: the replication service (normally run by systemd as mt-agent.service).
struct ServeCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "serve",
        abstract: "Run the replication service: receive replicated blocks, apply them, keep the journal and recovery points.",
        discussion: """
            Reads the configuration that 'mt-agent setup' wrote, refuses to start when the retention \
            volume fails 'mt-agent check retention', listens for senders on TLS port 9443 and serves \
            Prometheus metrics at http://METRICS_ADDRESS/metrics (metrics_address, 127.0.0.1:9464 by default). \
            SIGTERM stops it gracefully: no new connections, writes in flight made durable and acked. \
            SIGHUP (systemctl reload mt-agent) reads the configuration again: rpo_threshold, \
            retention_window, app_consistent_frequency, space_policy and log_level apply at once, other \
            changed keys are logged as needing a restart, and an invalid file is logged and ignored.

            Every key can be overridden, strongest first: --set KEY=VALUE, then the environment \
            variable MT_AGENT_<KEY> (e.g. MT_AGENT_RPO_THRESHOLD=5m), then the file.

            Examples:
              mt-agent serve                                 # as mt-agent.service runs it
              mt-agent serve --config /srv/lab/mt-agent.conf --log-level debug
              mt-agent serve --set rpo_threshold=5m --set metrics_address=off
            """)

    @Option(help: ArgumentHelp("The configuration file.", valueName: "path"))
    var config: String = AgentPaths.config

    @Option(help: ArgumentHelp("Listen on this port instead of the configured one (0: any free port, logged as 'ready').", valueName: "port"))
    var port: Int?

    @Option(name: .customLong("set"), help: ArgumentHelp(
        "Override a configuration key for this run (repeatable); wins over MT_AGENT_<KEY> and the file.", valueName: "key=value"))
    var settings: [String] = []

    @Option(name: .customLong("log-level"), help: "How much to log to stderr (overrides log_level; default info).")
    var logLevel: Logger.Level?

    func run() async throws {
        var logger = Logger(label: "mt-agent.serve", factory: LogOutput.handler)
        let files = RootedFiles(root: "/")
        let agent: AgentConfig
        let identity: TLSIdentity
        let key: PassphraseKey
        let sources: AgentConfigSources
        do {
            var commandLine: [String: String] = [:]
            for text in settings {
                let (key, value) = try AgentConfigSources.assignment(text)
                commandLine[key] = value
            }
            if let logLevel { commandLine["log_level"] = logLevel.rawValue }
            sources = AgentConfigSources(path: config, commandLine: commandLine)
            agent = try sources.load(from: files)
            logger.logLevel = Logger.Level(rawValue: agent.logLevel) ?? .info
            identity = try TLSIdentity.load(from: files, certificatePath: agent.tlsCertificate, keyPath: agent.tlsKey)
            key = try PassphraseKey.load(from: files, path: agent.passphraseKey)
        } catch {
            throw fail("\(error)")
        }
        let retention = try RetentionInspector.forRoot("/", logger: logger).check(path: agent.retentionPath)
        if let bad = retention.first(where: { $0.status == .fail }) {
            throw fail("retention volume \(agent.retentionPath) is not usable: \(bad.message)" + (bad.fix.map { " — \($0)" } ?? ""))
        }
        let server = ServerConfiguration(
            host: agent.listenAddress, port: port ?? agent.port,
            certificatePEM: identity.certificatePEM, privateKeyPEM: identity.privateKeyPEM,
            credentials: MasterCredentials(key: key.keyBytes, salt: key.salt, n: UInt64(key.parameters.n),
                                           r: UInt32(key.parameters.r), p: UInt32(key.parameters.p)),
            serverName: HostIdentity.hostname(files),
            limits: ServerLimits(handshakeTimeout: .seconds(Int64(agent.handshakeTimeout.seconds)), maxConnections: agent.maxConnections,
                                 maxUnauthenticatedConnections: agent.maxUnauthenticatedConnections,
                                 authChecksPerSecond: agent.authChecksPerSecond, maxPendingBytes: agent.maxPendingBytes.bytes))
        logger.info("starting", metadata: ["retention": "\(agent.retentionPath)", "fingerprint": "\(identity.fingerprint)"])
        // The one place the metrics backend is chosen; without an endpoint nothing is collected.
        var exposition: @Sendable () -> [UInt8] = { [] }
        if agent.metricsAddress != nil {
            let registry = PrometheusCollectorRegistry()
            MetricsSystem.bootstrap(PrometheusMetricsFactory(registry: registry))
            exposition = { registry.emitToBuffer() }
        }
        do {
            var assembly = ServeAssembly(server: server, retentionPath: agent.retentionPath,
                                         policy: agent.servicePolicy,
                                         reload: ConfigReloader(sources: sources, started: agent, files: files).reload,
                                         version: MTAgentVersion.string,
                                         metricsAddress: agent.metricsAddress.map { ($0.host, $0.port) }, metricsExposition: exposition,
                                         logger: logger)
            assembly.allowFileTargets = agent.allowFileTargets
            assembly.undoSetMaxRanges = agent.undoSetMaxRanges
            try await assembly.run()
        } catch {
            throw fail("\(error)")
        }
    }
}

/// Reads the configuration again on SIGHUP, from the same file, environment and options.
final class ConfigReloader: Sendable {
    let sources: AgentConfigSources
    /// What the service started with: keys that need a restart are compared with it.
    let started: AgentConfig
    let files: RootedFiles
    /// What the last reload applied: reloadable keys are compared with it.
    private let applied: Mutex<AgentConfig>

    init(sources: AgentConfigSources, started: AgentConfig, files: RootedFiles) {
        self.sources = sources
        self.started = started
        self.files = files
        applied = Mutex(started)
    }

    @Sendable func reload() -> ConfigReload {
        do {
            let new = try sources.load(from: files)
            let changed = applied.withLock { last in
                defer { last = new }
                return last.changedKeys(to: new).filter(AgentConfig.reloadableKeys.contains)
            }
            return .loaded(new.servicePolicy, applied: changed,
                           restartNeeded: started.changedKeys(to: new).filter { !AgentConfig.reloadableKeys.contains($0) })
        } catch {
            return .invalid("\(error)")
        }
    }
}

extension AgentConfig {
    var servicePolicy: ServicePolicy {
        ServicePolicy(rpoThreshold: .seconds(rpoThreshold.seconds), retentionWindow: .seconds(retentionWindow.seconds),
                      appConsistentFrequency: .seconds(appConsistentFrequency.seconds), spacePolicy: spacePolicy == .stop ? .stop : .pruneOldest, logLevel: Logger.Level(rawValue: logLevel) ?? .info)
    }
}
