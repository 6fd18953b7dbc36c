import Foundation
import Logging
import MTAgentCore
import MTAgentJournal
import NIOConcurrencyHelpers
import NIOPosix

/// Carries out recovery requests one at a time — in the service (behind the control socket) or in
/// the CLI when no service runs. `stopIngest` stops a group's replication before its targets are
/// touched.
public actor RecoveryDesk: ControlHandler {
    let recovery: Recovery
    let pool: NIOThreadPool?
    let stopIngest: @Sendable (String) async -> Void

    /// `pool`: where disk work runs in the service (never on the concurrency pool); nil in the CLI,
    /// which does it inline.
    public init(recovery: Recovery, pool: NIOThreadPool?, stopIngest: @escaping @Sendable (String) async -> Void = { _ in }) {
        self.recovery = recovery; self.pool = pool; self.stopIngest = stopIngest
    }

    func blocking<T: Sendable>(_ work: @escaping @Sendable () throws -> T) async throws -> T {
        if let pool { return try await pool.runIfActive(work) }
        return try work()
    }

    public func handle(_ request: ControlRequest, events: @escaping @Sendable (ControlEvent) -> Void) async -> ControlEvent {
        let recovery = self.recovery
        do {
            switch request.command {
            case .points:
                return try await blocking { ControlEvent(points: try recovery.points(group: request.group)) }
            case .failover:
                guard let group = request.group else { return ControlEvent(error: "failover needs --group") }
                guard let text = request.point, let selector = PointSelector(text) else {
                    return ControlEvent(error: "--point \(request.point ?? "") is not latest, latest-app, a point id or a time "
                        + "(ISO 8601 like 2026-11-26T20:00:00Z, or @unix-seconds)")
                }
                let throttle = ProgressThrottle(events)
                let plan = try await blocking {
                    _ = try recovery.finishInterrupted(except: group) { throttle.offer($0) }
                    return try recovery.prepareFailover(group: group, selector: selector, force: request.force)
                }
                await stopIngest(group)
                return try await blocking { ControlEvent(failover: try recovery.execute(plan) { throttle.offer($0) }) }
            case .status:
                return ControlEvent(error: "status needs a running service")
            case .commit:
                guard let group = request.group else { return ControlEvent(error: "commit needs --group") }
                return try await blocking {
                    _ = try recovery.finishInterrupted(except: group)
                    return ControlEvent(commit: try recovery.commit(group: group))
                }
            }
        } catch {
            return ControlEvent(error: "\(error)")
        }
    }
}

extension RecoveryDesk {
    /// One pruning pass, serialized with failover and commit.
    func prune(now: UInt64, windowNs: UInt64, pruneForSpace: Bool, reserve: UInt64, retention: String) async throws -> PruneReport {
        let recovery = self.recovery
        return try await blocking {
            try recovery.prune(now: now, windowNs: windowNs, pruneForSpace: pruneForSpace, reserve: reserve) { try availableBytes(retention) }
        }
    }
}

/// Passes on at most about five progress events a second, and always a phase's last one.
final class ProgressThrottle: Sendable {
    private let events: @Sendable (ControlEvent) -> Void
    private let last = NIOLockedValueBox<ContinuousClock.Instant?>(nil)

    init(_ events: @escaping @Sendable (ControlEvent) -> Void) { self.events = events }

    func offer(_ progress: FailoverProgress) {
        let now = ContinuousClock.now
        let pass = last.withLockedValue { last in
            guard progress.bytesDone == progress.bytesTotal || last.map({ now - $0 >= .milliseconds(200) }) ?? true else { return false }
            last = now
            return true
        }
        if pass { events(ControlEvent(progress: progress)) }
    }
}
