import Logging
import MTAgentLinux
import NIOConcurrencyHelpers
import ServiceLifecycle
import UnixSignals

/// The settings a running service can change without a restart (config keys `rpo_threshold`,
/// `retention_window`, `app_consistent_frequency`, `space_policy`, `log_level`).
public struct ServicePolicy: Sendable, Equatable {
    public var rpoThreshold: Duration
    public var retentionWindow: Duration
    /// A group whose newest app-consistent point is older than this is reported.
    public var appConsistentFrequency: Duration
    public var spacePolicy: RetentionSpacePolicy
    public var logLevel: Logger.Level

    public init(rpoThreshold: Duration, retentionWindow: Duration, appConsistentFrequency: Duration,
                spacePolicy: RetentionSpacePolicy, logLevel: Logger.Level) {
        self.rpoThreshold = rpoThreshold
        self.retentionWindow = retentionWindow
        self.appConsistentFrequency = appConsistentFrequency
        self.spacePolicy = spacePolicy
        self.logLevel = logLevel
    }
}

/// The policy in force, read by the RPO monitor, the retention keeper and status at each use.
public final class LivePolicy: Sendable {
    private let box: NIOLockedValueBox<ServicePolicy>
    /// Keys changed by a reload that only a restart applies (shown by `status`).
    private let restart = NIOLockedValueBox<[String]>([])

    public init(_ policy: ServicePolicy) {
        box = NIOLockedValueBox(policy)
        LogOutput.level = policy.logLevel
    }

    public var current: ServicePolicy { box.withLockedValue { $0 } }
    public var restartNeeded: [String] { restart.withLockedValue { $0 } }

    func apply(_ policy: ServicePolicy, restartNeeded: [String]) {
        box.withLockedValue { $0 = policy }
        restart.withLockedValue { $0 = restartNeeded }
        LogOutput.level = policy.logLevel
    }
}

/// What reading the configuration again gave: the new policy and the changed keys, split into
/// those applied now and those that need a restart — or why the configuration was not taken.
public enum ConfigReload: Sendable {
    case loaded(ServicePolicy, applied: [String], restartNeeded: [String])
    case invalid(String)
}

/// SIGHUP (`systemctl reload mt-agent`): reads the configuration again. A valid one applies what
/// can change while running and names what needs a restart; an invalid one is reported in one
/// line and the service keeps the configuration it runs with.
struct ReloadOnHangup: Service {
    let policy: LivePolicy
    let reload: @Sendable () -> ConfigReload
    let notifier: SystemdNotifier
    let logger: Logger

    func run() async throws {
        let signals = await UnixSignalsSequence(trapping: .sighup)
        for await _ in signals.cancelOnGracefulShutdown() {
            notifier.notify("RELOADING=1\nMONOTONIC_USEC=\(SystemdNotifier.monotonicMicroseconds())")
            switch reload() {
            case .invalid(let why):
                logger.error("configuration not reloaded, keeping the running one: \(why)")
            case .loaded(let new, let applied, let restartNeeded):
                policy.apply(new, restartNeeded: restartNeeded)
                logger.notice("configuration reloaded", metadata: [
                    "applied": "\(applied.isEmpty ? "nothing changed" : applied.joined(separator: ","))",
                    "restart_needed": "\(restartNeeded.isEmpty ? "none" : restartNeeded.joined(separator: ","))",
                ])
                if !restartNeeded.isEmpty {
                    logger.warning("changed settings need a restart to apply (systemctl restart mt-agent)",
                                   metadata: ["keys": "\(restartNeeded.joined(separator: ","))"])
                }
            }
            notifier.notify("READY=1")
        }
    }
}
