import ArgumentParser
import Logging
import Metrics
import MTAgentLinux
import MTAgentReplication
import MTAgentService
import MTAgentSetup
import NIOCore
import Prometheus

/// `mt-agent serve`: the replication service (normally run by systemd as mt-agent.service).
struct ServeCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "serve",
        abstract: "Run the replication service: receive replicated blocks, apply them, keep the journal and recovery points.",
        discussion: """
            Reads the configuration that 'mt-agent setup' wrote, refuses to start when the retention \
            volume fails 'mt-agent check retention', listens for senders on TLS port 9443 and serves \
            Prometheus metrics at http://METRICS_ADDRESS/metrics (metrics_address, 127.0.0.1:9464 by default). \
            SIGTERM stops it gracefully: no new connections, writes in flight made durable and acked.

            Examples:
              mt-agent serve                                 # as mt-agent.service runs it
              mt-agent serve --config /srv/lab/mt-agent.conf --log-level info
            """)

    @Option(help: ArgumentHelp("The configuration file.", valueName: "path"))
    var config: String = AgentPaths.config

    @Option(help: ArgumentHelp("Listen on this port instead of the configured one (0: any free port, logged as 'ready').", valueName: "port"))
    var port: Int?

    @Option(name: .customLong("log-level"), help: "How much to log to stderr.")
    var logLevel: Logger.Level = .info

    func run() async throws {
        var logger = Logger(label: "mt-agent.serve", factory: LogOutput.handler)
        logger.logLevel = logLevel
        let files = RootedFiles(root: "/")
        let agent: AgentConfig
        let identity: TLSIdentity
        let key: PassphraseKey
        do {
            agent = try AgentConfig.load(from: files, path: config)
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
            serverName: HostIdentity.hostname(files))
        logger.info("starting", metadata: ["retention": "\(agent.retentionPath)", "fingerprint": "\(identity.fingerprint)"])
        // The one place the metrics backend is chosen; without an endpoint nothing is collected.
        var exposition: @Sendable () -> [UInt8] = { [] }
        if agent.metricsAddress != nil {
            let registry = PrometheusCollectorRegistry()
            MetricsSystem.bootstrap(PrometheusMetricsFactory(registry: registry))
            exposition = { registry.emitToBuffer() }
        }
        do {
            try await ServeAssembly(server: server, retentionPath: agent.retentionPath,
                                    rpoThreshold: .seconds(agent.rpoThreshold.seconds),
                                    retentionWindow: .seconds(agent.retentionWindow.seconds),
                                    spacePolicy: agent.spacePolicy == .stop ? .stop : .pruneOldest,
                                    version: MTAgentVersion.string,
                                    metricsAddress: agent.metricsAddress.map { ($0.host, $0.port) }, metricsExposition: exposition,
                                    logger: logger).run()
        } catch {
            throw fail("\(error)")
        }
    }
}
