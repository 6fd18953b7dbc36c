import Foundation
import MTAgentCore
import MTAgentJournal
import MTAgentReplication
import NIOConcurrencyHelpers

/// What `mt-agent status` shows: the running service, its groups and pairs, and what needs fixing.
public struct ServiceStatus: Sendable, Codable, Equatable {
    public struct Pair: Sendable, Codable, Equatable {
        public var pair: String
        public var target: String
        public var state: String
        /// Open by a sender right now.
        public var connected: Bool
        public var durableSeq: UInt64
        public var resyncOffset: UInt64
        public var targetBytes: UInt64
        /// 0–100 while resyncing.
        @Nullable public var resyncPercent: Int? = nil
        @Nullable public var reason: String? = nil
        public var journalBytes: UInt64
        /// Data received from the sender per second, averaged over the last 10 s (0 when not connected).
        public var throughputBytesPerSecond: Double = 0
    }
    public struct Group: Sendable, Codable, Equatable {
        public var group: String
        public var pairs: [Pair]
        public var points: Int
        @Nullable public var oldestPoint: String? = nil
        @Nullable public var newestPoint: String? = nil
        /// Now − source time of the newest point; nil before the first point.
        @Nullable public var rpoLagSeconds: Double? = nil
        public var rpoThresholdSeconds: Int
        @Nullable public var failover: FailoverState? = nil
    }
    /// The settings the service runs with now (a SIGHUP reload may have changed them).
    public struct Settings: Sendable, Codable, Equatable {
        public var rpoThresholdSeconds: Int
        public var retentionWindowSeconds: Int
        public var appConsistentFrequencySeconds: Int
        public var spacePolicy: String
        public var logLevel: String
        /// Keys changed in the configuration since the start that only a restart applies.
        public var restartNeeded: [String]
    }
    public struct Problem: Sendable, Codable, Equatable {
        public var message: String
        public var fix: String
    }
    /// Always true here; `mt-agent status --json` prints `{"running": false}` when no service runs.
    public var running = true
    public var version: String
    public var pid: Int32
    public var uptimeSeconds: Double
    public var listening: String
    public var retention: String
    public var retentionFreeBytes: UInt64
    public var retentionReserveBytes: UInt64
    public var settings: Settings
    public var groups: [Group]
    public var problems: [Problem]
}

/// Gathers `ServiceStatus` from the catalog, the journals and the listener's open pairs.
struct StatusReporter: Sendable {
    let catalog: Catalog
    let layout: RetentionLayout
    let version: String
    let started: ContinuousClock.Instant
    let policy: LivePolicy
    let listening: NIOLockedValueBox<String>
    let gate: SpaceGate
    let openPairs: @Sendable () async -> [(pairID: String, group: String, status: ReplicaStatus)]

    func report() async throws -> ServiceStatus {
        let open = await openPairs()
        var now = timespec()
        clock_gettime(CLOCK_REALTIME, &now)
        let nowNs = UInt64(now.tv_sec) * 1_000_000_000 + UInt64(now.tv_nsec)
        let free = (try? availableBytes(layout.retention)) ?? 0
        let allPairs = try catalog.pairs()
        let reserve = RetentionRules.requiredFreeBytes(pairs: allPairs.count)
        let policy = policy.current
        let threshold = Int(policy.rpoThreshold.components.seconds)
        var problems: [ServiceStatus.Problem] = []
        let restartNeeded = self.policy.restartNeeded
        if !restartNeeded.isEmpty {
            problems.append(.init(message: "configuration changed: \(restartNeeded.joined(separator: ", ")) only apply after a restart",
                                  fix: "systemctl restart mt-agent (senders reconnect and resume)"))
        }
        if let reason = gate.reason {
            problems.append(.init(message: reason, fix: "free space on the retention volume or grow it; then restart the senders"))
        } else if free < reserve {
            problems.append(.init(message: "the retention volume has \(free >> 20) MiB free, under its reserve of \(reserve >> 20) MiB",
                                  fix: "grow the retention volume, or shorten retention_window"))
        }
        var groups: [ServiceStatus.Group] = []
        for group in try catalog.groups() {
            let points = try catalog.recoveryPoints(group: group)
            let failover = try catalog.failover(group: group)
            let pairs = allPairs.filter { $0.group == group }.map { info -> ServiceStatus.Pair in
                let live = open.first { $0.pairID == info.id }?.status
                let state = live?.state ?? info.state
                let size = live?.targetSize ?? info.sourceSize
                let offset = live?.resyncOffset ?? info.resyncOffset
                return ServiceStatus.Pair(
                    pair: info.id, target: info.target, state: state.rawValue, connected: live != nil,
                    durableSeq: live?.durableSeq ?? info.durableSeq, resyncOffset: offset, targetBytes: size,
                    resyncPercent: state == .resyncing && size > 0 ? Int(min(1, Double(offset) / Double(size)) * 100) : nil,
                    reason: live?.reason ?? info.reason, journalBytes: (Identifier(info.id).map { treeBytes(layout.journal($0)) } ?? 0),
                    throughputBytesPerSecond: live?.receivedBytesPerSecond ?? 0)
            }
            let newest = points.map(\.sourceTime).max()
            let lag = newest.map { nowNs > $0 ? Double(nowNs - $0) / 1e9 : 0 }
            if failover == nil {
                if let lag, lag > Double(threshold) {
                    problems.append(.init(message: "group \(group): newest recovery point is \(Int(lag)) s old, over the RPO threshold of \(threshold) s",
                                          fix: "check that its sender runs and tags (mt-agent send follow), and the network to it"))
                }
                // App-consistent points are expected every app_consistent_frequency, counted from the
                // newest one, or from the group's oldest point when it never had one.
                let frequency = Int(policy.appConsistentFrequency.components.seconds)
                let newestApp = points.filter { $0.kind == .app }.map(\.sourceTime).max()
                if let since = newestApp ?? points.map(\.sourceTime).min(), nowNs > since, Int((nowNs - since) / 1_000_000_000) > frequency {
                    let age = Int((nowNs - since) / 1_000_000_000)
                    problems.append(.init(
                        message: newestApp == nil
                            ? "group \(group): no app-consistent point in \(age) s of points, over app_consistent_frequency \(frequency) s"
                            : "group \(group): newest app-consistent point is \(age) s old, over app_consistent_frequency \(frequency) s",
                        fix: "check the sender's app tags (mt-agent send follow --app-tag NAME --freeze MOUNT) and that the application can be frozen"))
                }
                for p in pairs where p.state == PairState.resyncRequired.rawValue {
                    problems.append(.init(message: "pair \(p.pair) of group \(group) needs a resync: \(p.reason ?? "")",
                                          fix: "run the sender again; it resyncs the pair (mt-agent send resync)"))
                }
            } else if let failover {
                problems.append(.init(message: "group \(group) is failed over to point \(failover.pointID) (\(failover.status.rawValue)); replication is stopped",
                                      fix: "mt-agent failover --group \(group) --point … to change the point, or mt-agent commit --group \(group)"))
            }
            groups.append(.init(
                group: group, pairs: pairs, points: points.count,
                oldestPoint: points.map(\.sourceTime).min().map(PointSummary.format),
                newestPoint: newest.map(PointSummary.format), rpoLagSeconds: lag, rpoThresholdSeconds: threshold,
                failover: failover))
        }
        return ServiceStatus(
            running: true, version: version, pid: getpid(), uptimeSeconds: (ContinuousClock.now - started).seconds,
            listening: listening.withLockedValue { $0 }, retention: layout.retention, retentionFreeBytes: free,
            retentionReserveBytes: reserve,
            settings: .init(rpoThresholdSeconds: threshold, retentionWindowSeconds: Int(policy.retentionWindow.components.seconds),
                            appConsistentFrequencySeconds: Int(policy.appConsistentFrequency.components.seconds),
                            spacePolicy: policy.spacePolicy == .stop ? "stop" : "prune-oldest", logLevel: policy.logLevel.rawValue,
                            restartNeeded: restartNeeded),
            groups: groups, problems: problems)
    }
}

/// The service's control socket: `status` answered here, recovery requests by the desk.
struct ServiceControl: ControlHandler {
    let desk: RecoveryDesk
    let status: StatusReporter

    func handle(_ request: ControlRequest, events: @escaping @Sendable (ControlEvent) -> Void) async -> ControlEvent {
        guard request.command == .status else { return await desk.handle(request, events: events) }
        do {
            return ControlEvent(status: try await status.report())
        } catch {
            return ControlEvent(error: "\(error)")
        }
    }
}
