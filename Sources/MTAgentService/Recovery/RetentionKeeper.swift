import Foundation
import Glibc
import Logging
import MTAgentCore
import MTAgentJournal
import MTAgentReplication
import NIOConcurrencyHelpers
import ServiceLifecycle

/// What the service does when the retention volume runs under its reserve (config `space_policy`).
public enum RetentionSpacePolicy: Sendable { case pruneOldest, stop }

/// Open or closed to replication because of retention space (space_policy stop).
public final class SpaceGate: Sendable {
    private let closed = NIOLockedValueBox<String?>(nil)
    public init() {}
    /// Why replication is stopped, or nil.
    public var reason: String? { closed.withLockedValue { $0 } }
    func close(_ reason: String) -> Bool { closed.withLockedValue { let was = $0 == nil; $0 = reason; return was } }
    func open() -> Bool { closed.withLockedValue { let was = $0 != nil; $0 = nil; return was } }
}

/// Every few seconds (a quarter of the window, 1–10 s): prunes points older than the retention
/// window and the journal only they need; when the volume is under its reserve, applies the space
/// policy — prune the oldest points (loudly), or stop every group's replication with a health
/// error until space is freed.
struct RetentionKeeper: Service {
    let desk: RecoveryDesk
    let retention: String
    /// `retention_window` and `space_policy`, read at every pass (SIGHUP may change them).
    let policy: LivePolicy
    let gate: SpaceGate
    let stopGroup: @Sendable (String, String) async -> Void
    let catalog: Catalog
    let logger: Logger
    let failures = ServerMetrics.errorCounter(kind: "pruning")

    var interval: Duration { min(.seconds(10), max(.seconds(1), policy.current.retentionWindow / 4)) }

    func run() async throws {
        while !Task.isShuttingDownGracefully && !Task.isCancelled {
            await pass()
            try? await cancelWhenGracefulShutdown { try await Task.sleep(for: interval) }
        }
    }

    func pass() async {
        // One read: a reload between two reads could mix a window and a policy of different files.
        let settings = policy.current
        let window = settings.retentionWindow
        let spacePolicy = settings.spacePolicy
        do {
            let pairs = try catalog.pairs().count
            let reserve = RetentionRules.requiredFreeBytes(pairs: pairs)
            var now = timespec()
            clock_gettime(CLOCK_REALTIME, &now)
            let nowNs = UInt64(now.tv_sec) * 1_000_000_000 + UInt64(now.tv_nsec)
            let windowNs = UInt64(window.components.seconds) * 1_000_000_000
            let report = try await desk.prune(now: nowNs, windowNs: windowNs, pruneForSpace: spacePolicy == .pruneOldest,
                                              reserve: reserve, retention: retention)
            if report.segmentsRemoved > 0 {
                logger.info("removed journal segments no recovery point needs", metadata: [
                    "segments": "\(report.segmentsRemoved)", "bytes.freed": "\(report.bytesFreed)"])
            }
            let free = try availableBytes(retention)
            if report.stillShort {
                let why = "the retention volume \(retention) has \(free >> 20) MiB free, under its reserve of \(reserve >> 20) MiB"
                    + (spacePolicy == .stop ? " and space_policy is stop: replication is stopped until space is freed"
                                       : ": only each group's newest point is left to prune")
                if spacePolicy == .stop {
                    if gate.close(why) { logger.error("retention volume full: replication stopped", metadata: ["reason": "\(why)"]) }
                    for group in try catalog.groups() where try catalog.failover(group: group) == nil {
                        await stopGroup(group, why)
                    }
                } else {
                    logger.error("retention volume short of space", metadata: ["reason": "\(why)"])
                }
            } else if free >= reserve, gate.open() {
                logger.notice("retention volume has space again: replication may resume (restart the senders)")
            }
        } catch {
            failures.increment()
            logger.error("retention pruning failed", metadata: ["error": "\(error)"])
        }
    }
}
