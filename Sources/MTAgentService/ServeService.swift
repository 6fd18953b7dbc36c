import Foundation
import Glibc
import Logging
import Metrics
import MTAgentCore
import MTAgentJournal
import MTAgentLinux
import MTAgentReplication
import NIOConcurrencyHelpers
import NIOCore
import NIOPosix
import ServiceLifecycle

/// Everything `mt-agent serve` runs, assembled: the replication listener, the systemd watchdog
/// and the RPO monitor, in one `ServiceGroup` that stops on SIGTERM/SIGINT after the listener has
/// drained, flushed and acked what was in flight.
public struct ServeAssembly {
    public var server: ServerConfiguration
    public var retentionPath: String
    public var policy: ServicePolicy
    /// Reads the configuration again, on SIGHUP.
    public var reload: @Sendable () -> ConfigReload
    public var root: String
    public var version: String
    /// Where the Prometheus endpoint listens (`host`, `port`); nil for none.
    public var metricsAddress: (host: String, port: Int)?
    /// What the endpoint serves: the text exposition of the metrics backend the executable
    /// bootstrapped (the library only emits through swift-metrics).
    public var metricsExposition: @Sendable () -> [UInt8]
    /// Config `undo_set_max_ranges`: the bound of each pair's undo set.
    public var undoSetMaxRanges: Int = UndoSet.defaultMaxRanges
    public var logger: Logger
    /// The lab setting `allow_file_targets` (off: targets are block devices only).
    public var allowFileTargets = false

    public init(server: ServerConfiguration, retentionPath: String, policy: ServicePolicy,
                reload: @escaping @Sendable () -> ConfigReload, root: String = "/", version: String,
                metricsAddress: (host: String, port: Int)? = nil, metricsExposition: @escaping @Sendable () -> [UInt8] = { [] },
                logger: Logger) {
        self.version = version
        self.metricsAddress = metricsAddress
        self.metricsExposition = metricsExposition
        self.server = server; self.retentionPath = retentionPath; self.policy = policy; self.reload = reload
        self.root = root; self.logger = logger
    }

    public func run() async throws {
        let notifier = SystemdNotifier.fromProcess()
        // SIGHUP's default action ends the process: ignore it from the start, so that a reload
        // sent before the reload service listens (it may be, once READY=1 is out) is not a stop.
        signal(SIGHUP, SIG_IGN)
        let live = LivePolicy(policy)
        let layout = RetentionLayout(retention: retentionPath)
        try makeDirectory(layout.base)
        // One process works on the journals at a time: this service, or a recovery command run
        // while it is stopped.
        guard let lock = try FileLock.tryExclusive(path: layout.lock) else {
            throw ServeError.locked(layout.lock)
        }
        defer { lock.release() }
        let catalog = try Catalog(path: layout.catalog)
        let gate = SpaceGate()
        let store = JournalStore(catalog: catalog, retentionPath: retentionPath,
                                 inspector: TargetInspector.forRoot(root, logger: logger), logger: logger, gate: gate,
                                 allowFileTargets: allowFileTargets, undoSetMaxRanges: undoSetMaxRanges)
        let recovery = store.recovery(logger: logger)
        // A failover or commit killed half-way is finished before any sender can connect.
        let finished = try recovery.finishInterrupted()
        if !finished.isEmpty { logger.notice("finished interrupted recovery work", metadata: ["groups": "\(finished)"]) }
        // Blocking disk I/O (pwrite, fdatasync, pread for hashes, target discovery) runs here,
        // never on the Swift concurrency pool or the event loops.
        let pool = NIOThreadPool(numberOfThreads: 4)
        pool.start()

        let logger = self.logger
        let port = server.port
        let listening = NIOLockedValueBox("not yet")
        let listener = ReplicationServer(configuration: server, store: store, pool: pool, logger: logger) { address in
            listening.withLockedValue { $0 = "\(address.ipAddress ?? "?"):\(address.port ?? port)" }
            notifier.notify("READY=1\nSTATUS=listening on \(address), no pairs yet")
            // Tests and scripts wait for this line to know the port (useful with port 0).
            logger.notice("ready", metadata: ["port": "\(address.port ?? port)"])
        }
        let desk = RecoveryDesk(recovery: recovery, pool: pool) { group in
            let stopped = await listener.stop(group: group, code: .failedOver, message: "group \(group) was failed over on the master target; "
                + "it accepts nothing for the group until 'mt-agent commit --group \(group)'")
            logger.notice("replication stopped for failover", metadata: ["group.id": "\(group)", "pairs": "\(stopped)"])
        }
        let status = StatusReporter(catalog: catalog, layout: layout, version: version, started: .now, policy: live,
                                    listening: listening, gate: gate, openPairs: { await listener.pairs() })
        // Bound before anything runs: a taken port stops serve before it accepts a sender.
        var metrics: MetricsEndpoint?
        if let address = metricsAddress {
            let (gauges, render) = (StatusGauges(), metricsExposition)
            do {
                metrics = try await MetricsEndpoint.bind(host: address.host, port: address.port, exposition: {
                    do {
                        gauges.update(from: try await status.report())
                    } catch {
                        logger.warning("metrics: cannot gather the service status", metadata: ["error": "\(error)"])
                    }
                    return render()
                }, logger: logger)
            } catch {
                try? await pool.shutdownGracefully()
                throw error
            }
        }
        var services: [any Service] = [listener, ControlServer(path: layout.controlSocket, handler: ServiceControl(desk: desk, status: status), logger: logger),
                                       RetentionKeeper(desk: desk, retention: retentionPath, policy: live, gate: gate,
                                                       stopGroup: { group, why in _ = await listener.stop(group: group, code: .retentionFull, message: why) },
                                                       catalog: catalog, logger: logger),
                                       StoppingNotice(notifier: notifier), RPOMonitor(catalog: catalog, policy: live, listener: listener, notifier: notifier, logger: logger),
                                       ReloadOnHangup(policy: live, reload: reload, notifier: notifier, logger: logger)]
        if let usec = notifier.watchdogMicroseconds {
            services.append(WatchdogService(notifier: notifier, interval: .microseconds(Int64(usec / 2))))
        }
        // First in the group, so shut down last: scrapes still answer while the listener drains.
        if let metrics { services.insert(metrics, at: 0) }
        let group = ServiceGroup(configuration: .init(
            services: services.map { .init(service: $0, successTerminationBehavior: .gracefullyShutdownGroup) },
            gracefulShutdownSignals: [.sigterm, .sigint],
            logger: logger))
        do {
            try await group.run()
        } catch {
            try? await pool.shutdownGracefully()
            throw error
        }
        try await pool.shutdownGracefully()
    }
}

public enum ServeError: Error, CustomStringConvertible {
    case locked(String)
    public var description: String {
        switch self {
        case .locked(let path):
            "another mt-agent process holds \(path): a second serve, or a failover or commit run while the service was stopped — wait for it"
        }
    }
}

func makeDirectory(_ path: String) throws {
    do { try FileManager.default.createDirectory(atPath: path, withIntermediateDirectories: true) } catch {
        throw RecoveryRefusal("cannot create \(path): \(error)")
    }
}

/// Tells systemd the moment graceful shutdown starts (SIGTERM): STOPPING=1.
struct StoppingNotice: Service {
    let notifier: SystemdNotifier

    func run() async throws {
        try? await gracefulShutdown()
        notifier.notify("STOPPING=1\nSTATUS=stopping: finishing and acknowledging writes in flight")
    }
}

/// Tells systemd the service is alive, at half the watchdog interval.
struct WatchdogService: Service {
    let notifier: SystemdNotifier
    let interval: Duration

    func run() async throws {
        while !Task.isCancelled && !Task.isShuttingDownGracefully {
            notifier.notify("WATCHDOG=1")
            try? await cancelWhenGracefulShutdown { try await Task.sleep(for: interval) }
        }
    }
}

/// Every 10 s: each group's RPO lag (now − source time of its newest recovery point), a warning
/// when it crosses the threshold, and a one-line STATUS for systemctl. A group without any point
/// yet counts its lag from when all its open pairs were first seen in sync (an initial resync is
/// not an RPO breach).
struct RPOMonitor: Service {
    let catalog: Catalog
    let policy: LivePolicy
    let listener: ReplicationServer
    let notifier: SystemdNotifier
    let logger: Logger

    func run() async throws {
        var warned: Set<String> = []
        var syncedSince: [String: UInt64] = [:]
        // Per group, created when the group is first seen so its series starts at 0.
        var violations: [String: Counter] = [:]
        let failures = ServerMetrics.errorCounter(kind: "rpo-check")
        // Cancelled too when another service of the group fails (say the port is taken): without
        // that check the swallowed CancellationError of the sleep made this loop spin.
        while !Task.isShuttingDownGracefully && !Task.isCancelled {
            do {
                let pairs = await listener.pairs()
                let points = try catalog.recoveryPoints(group: nil)
                var now = timespec()
                clock_gettime(CLOCK_REALTIME, &now)
                let nowNs = UInt64(now.tv_sec) * 1_000_000_000 + UInt64(now.tv_nsec)
                var newest: [String: UInt64] = [:]
                for p in points { newest[p.group] = max(newest[p.group] ?? 0, p.sourceTime) }
                let threshold = policy.current.rpoThreshold
                let thresholdNs = UInt64(threshold.components.seconds) * 1_000_000_000
                for group in Set(pairs.map(\.group)) {
                    let violated = violations[group] ?? Counter(label: "mt_agent_rpo_violations_total", dimensions: [("group", group)])
                    violations[group] = violated
                    let members = pairs.filter { $0.group == group }
                    if members.allSatisfy({ $0.status.state == .inSync }) {
                        syncedSince[group] = syncedSince[group] ?? nowNs
                    } else {
                        syncedSince[group] = nil
                    }
                    guard let since = newest[group] ?? syncedSince[group] else { continue }
                    let lag: UInt64? = newest[group].map { nowNs > $0 ? nowNs - $0 : 0 }
                    if nowNs > since, nowNs - since > thresholdNs {
                        if !warned.contains(group) {
                            violated.increment()
                            logger.warning("RPO threshold crossed", metadata: [
                                "group.id": "\(group)",
                                "rpo.lag_seconds": "\(lag.map { "\($0 / 1_000_000_000)" } ?? "no recovery point yet")",
                                "rpo.threshold_seconds": "\(threshold.components.seconds)",
                            ])
                            warned.insert(group)
                        }
                    } else if warned.remove(group) != nil {
                        logger.notice("RPO back within threshold", metadata: ["group.id": "\(group)"])
                    }
                }
                let inSync = pairs.filter { $0.status.state == .inSync }.count
                notifier.notify("STATUS=\(pairs.count) pairs open, \(inSync) in sync, \(points.count) recovery points")
            } catch {
                failures.increment()
                logger.error("RPO check failed", metadata: ["error": "\(error)"])
            }
            try? await cancelWhenGracefulShutdown { try await Task.sleep(for: .seconds(10)) }
        }
    }
}
