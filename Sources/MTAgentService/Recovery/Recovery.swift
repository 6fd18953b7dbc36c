import Foundation
import Logging
import MTAgentCore
import MTAgentJournal

/// The recovery points of one group as `mt-agent points` shows them.
public struct GroupPoints: Sendable, Codable, Equatable {
    public var group: String
    public var pairs: [String]
    @Nullable public var failover: FailoverState? = nil
    /// Newest first; only points every pair of the group can be rolled back to.
    public var points: [ListedPoint]
    /// Health notes, e.g. points pruned early because the retention volume ran short.
    public var warnings: [String] = []
}

public struct ListedPoint: Sendable, Codable, Equatable {
    public var point: PointSummary
    public var latest: Bool
    public var latestApp: Bool
    /// The point the group's targets are at (or moving to) after a failover.
    public var current: Bool
}

/// A failover as it goes: which pair, which phase, how far.
public struct FailoverProgress: Sendable, Codable, Equatable {
    public var pair: String
    public var pairIndex: Int
    public var pairCount: Int
    public var phase: RollbackProgress.Phase
    public var bytesDone: UInt64
    public var bytesTotal: UInt64
}

public struct FailoverReport: Sendable, Codable, Equatable {
    public struct PairResult: Sendable, Codable, Equatable {
        public var pair: String
        public var target: String
        public var stats: RollbackStats
    }
    public var group: String
    public var point: PointSummary
    public var pairs: [PairResult]
    public var seconds: Double
}

public struct CommitReport: Sendable, Codable, Equatable {
    public var group: String
    public var pointID: Int64
    public var pairs: [String]
    /// Targets released (their assignments removed).
    public var targets: [String]
    public var journalBytesFreed: UInt64
}

/// Why a recovery command refuses; one line that names the problem and what to do.
public struct RecoveryRefusal: Error, Sendable, Equatable, CustomStringConvertible {
    public var message: String
    public init(_ message: String) { self.message = message }
    public var description: String { message }
}

/// A failover that passed its checks and was recorded: what `execute` moves the targets to.
public struct FailoverPlan: Sendable {
    public var group: String
    public var point: RecoveryPoint
    public var pairs: [(pair: PairInfo, target: AdmittedTarget)]
}

/// Points, failover and commit over one retention volume's catalog and journals (DESIGN §7,
/// docs/JOURNAL.md "Failover"). Exactly one process works on a volume at a time: the service
/// (answering the control socket), or a CLI command holding the service lock.
public final class Recovery: Sendable {
    let catalog: Catalog
    let layout: RetentionLayout
    /// The device or file a pair's target resolves to now, once every target rule passes, and the
    /// node it is (checked again on the descriptor the rollback opens).
    let resolveTarget: @Sendable (PairInfo) throws -> AdmittedTarget
    let logger: Logger

    public init(catalog: Catalog, layout: RetentionLayout, logger: Logger,
                resolveTarget: @escaping @Sendable (PairInfo) throws -> AdmittedTarget) {
        self.catalog = catalog; self.layout = layout; self.logger = logger; self.resolveTarget = resolveTarget
    }

    // MARK: points

    public func points(group: String?) throws -> [GroupPoints] {
        let groups = try catalog.groups()
        if let group, !groups.contains(group) { throw unknownGroup(group, known: groups) }
        return try (group.map { [$0] } ?? groups).map { g in
            let pairs = try catalog.pairs(group: g).map(\.id)
            let failover = try catalog.failover(group: g)
            let offered = try commonPoints(group: g, pairs: pairs).map(\.summary)
            let latest = try? PointSelector.latest.select(from: offered, group: g).get()
            let latestApp = try? PointSelector.latestApp.select(from: offered, group: g).get()
            var warnings: [String] = []
            if let early = try catalog.spacePruning(group: g) {
                warnings.append("\(early.points) recovery point\(early.points == 1 ? " was" : "s were") pruned before the retention window "
                    + "because the retention volume ran short of space (space_policy prune-oldest; last at "
                    + "\(PointSummary.format(Self.nanoseconds(early.last)))) — give the retention volume more space")
            }
            return GroupPoints(group: g, pairs: pairs, failover: failover, points: offered.map { p in
                ListedPoint(point: p, latest: p.id == latest?.id, latestApp: p.id == latestApp?.id,
                            current: p.id == failover?.pointID)
            }, warnings: warnings)
        }
    }

    /// The points whose positions cover every pair of the group, newest first.
    func commonPoints(group: String, pairs: [String]) throws -> [RecoveryPoint] {
        try catalog.recoveryPoints(group: group).filter { point in pairs.allSatisfy { point.positions[$0] != nil } }
    }

    /// A date from the catalog in ns since 1970, clamped: a damaged row must not trap the listing.
    static func nanoseconds(_ date: Date) -> UInt64 {
        let ns = date.timeIntervalSince1970 * 1e9
        guard ns.isFinite, ns > 0 else { return 0 }
        return ns < 18e18 ? UInt64(ns) : .max
    }

    private func unknownGroup(_ group: String, known: [String]) -> RecoveryRefusal {
        RecoveryRefusal("no group \(group) on this master target"
            + (known.isEmpty ? " (no group has a target assigned)" : " (groups: \(known.joined(separator: ", ")))"))
    }

    // MARK: failover

    /// Checks everything that can be checked before a target is touched, then records the failover
    /// durably (which stops the service from opening the group's pairs). The caller stops ingest for
    /// the group before `execute`.
    public func prepareFailover(group: String, selector: PointSelector, force: Bool) throws -> FailoverPlan {
        let groups = try catalog.groups()
        guard groups.contains(group) else { throw unknownGroup(group, known: groups) }
        let pairs = try catalog.pairs(group: group)
        if let current = try catalog.failover(group: group), current.status == .committing {
            throw RecoveryRefusal("group \(group) is being committed; run 'mt-agent commit --group \(group)' to finish it")
        }
        if !force, let busy = pairs.first(where: { $0.state == .resyncing }) {
            // Both from the catalog: checked, never trapped on (an offset past the size reads 100 %).
            let percent = busy.sourceSize > 0 ? Int(min(1, Double(busy.resyncOffset) / Double(busy.sourceSize)) * 100) : 0
            throw RecoveryRefusal("pair \(busy.id) of group \(group) is resyncing (\(percent) % done): failing over now "
                + "stops that resync — wait until the group is in sync, or pass --force to fail over to a point taken before it")
        }
        let common = try commonPoints(group: group, pairs: pairs.map(\.id))
        if common.isEmpty, let some = try catalog.recoveryPoints(group: group).first, let missing = pairs.first(where: { some.positions[$0.id] == nil }) {
            throw RecoveryRefusal("group \(group) has recovery points, but none covers pair \(missing.id) "
                + "(it joined the group after them or is not in sync yet)")
        }
        let chosen: PointSummary
        switch selector.select(from: common.map(\.summary), group: group) {
        case .success(let p): chosen = p
        case .failure(let error): throw RecoveryRefusal("\(error)")
        }
        let point = common.first { $0.id == chosen.id }!
        var resolved: [(PairInfo, AdmittedTarget)] = []
        for pair in pairs {
            do {
                resolved.append((pair, try resolveTarget(pair)))
            } catch {
                throw RecoveryRefusal("cannot roll back pair \(pair.id): \(error)")
            }
        }
        try catalog.setFailover(group: group, pointID: point.id, status: .rollingBack)
        logger.notice("failover recorded: replication of the group stops", metadata: [
            "group.id": "\(group)", "point.id": "\(point.id)", "point.kind": "\(point.kind)", "point.name": "\(point.name)",
        ])
        return FailoverPlan(group: group, point: point, pairs: resolved)
    }

    /// Moves every target of the plan to its point (crash-safe, see `PairRollback`), then marks the
    /// group `at-point`.
    public func execute(_ plan: FailoverPlan, progress: @escaping (FailoverProgress) throws -> Void = { _ in }) throws -> FailoverReport {
        let started = ContinuousClock.now
        var results: [FailoverReport.PairResult] = []
        for (index, (pair, target)) in plan.pairs.enumerated() {
            var pairLogger = logger
            pairLogger[metadataKey: "pair.id"] = "\(pair.id)"
            pairLogger[metadataKey: "group.id"] = "\(plan.group)"
            let id = try Self.pathID(pair.id)
            guard let journal = try layout.openJournal(id) else {
                throw RecoveryRefusal("the journal of pair \(pair.id) (\(layout.journal(id))) is missing: group \(plan.group) cannot be rolled back")
            }
            // A plan made by `failover` covers every pair; one rebuilt from the catalog after a crash
            // is checked here, since a catalog row is data, not a promise.
            guard let position = plan.point.positions[pair.id] else {
                throw RecoveryRefusal("recovery point \(plan.point.id) has no journal position for pair \(pair.id): group \(plan.group) cannot be rolled back to it")
            }
            let stats = try PairRollback.roll(
                pairJournal: journal.path, savedDirectory: try layout.makeSaved(id),
                to: position, target: target.path, admitted: target.node
            ) { p in
                try progress(FailoverProgress(pair: pair.id, pairIndex: index + 1, pairCount: plan.pairs.count,
                                          phase: p.phase, bytesDone: p.bytesDone, bytesTotal: p.bytesTotal))
            }
            pairLogger.info("target rolled back", metadata: [
                "target": "\(target.path)", "point.id": "\(plan.point.id)", "rollback.savedBytes": "\(stats.savedBytes)",
                "rollback.forwardBytes": "\(stats.forwardBytes)", "rollback.undoBytes": "\(stats.undoBytes)",
            ])
            results.append(.init(pair: pair.id, target: target.path, stats: stats))
        }
        try catalog.setFailover(group: plan.group, pointID: plan.point.id, status: .atPoint)
        let seconds = (ContinuousClock.now - started).seconds
        logger.notice("failover complete", metadata: ["group.id": "\(plan.group)", "point.id": "\(plan.point.id)", "seconds": "\(seconds)"])
        return FailoverReport(group: plan.group, point: plan.point.summary, pairs: results, seconds: seconds)
    }

    // MARK: commit

    public func commit(group: String) throws -> CommitReport {
        let groups = try catalog.groups()
        guard groups.contains(group), let state = try catalog.failover(group: group) else {
            throw RecoveryRefusal(groups.contains(group)
                ? "group \(group) is not failed over: run 'mt-agent failover --group \(group) --point …' first, then commit"
                : unknownGroup(group, known: groups).message)
        }
        if state.status == .rollingBack {
            throw RecoveryRefusal("the failover of group \(group) to point \(state.pointID) did not finish: run "
                + "'mt-agent failover --group \(group) --point \(state.pointID)' (or restart the service) to finish it, then commit")
        }
        try catalog.setFailover(group: group, pointID: state.pointID, status: .committing)
        return try finishCommit(group: group, pointID: state.pointID)
    }

    /// Drops the journals and saved stores, then the catalog rows; safe to run again after a crash.
    private func finishCommit(group: String, pointID: Int64) throws -> CommitReport {
        let pairs = try catalog.pairs(group: group)
        let targets = try catalog.assignments().filter { $0.group == group }.map(\.target)
        // Every id first: a catalog row whose id is no valid name (the catalog was altered) stops the
        // commit before anything is deleted.
        let ids = try pairs.map { try Self.pathID($0.id) }
        var freed: UInt64 = 0
        for id in ids {
            do {
                freed += try layout.removeJournal(id)
                freed += try layout.removeSaved(id)
            } catch {
                throw RecoveryRefusal("cannot remove the journal of pair \(id): \(error)")
            }
        }
        try catalog.dropGroup(group)
        logger.notice("failover committed: journal dropped, targets released", metadata: [
            "group.id": "\(group)", "point.id": "\(pointID)", "journal.bytesFreed": "\(freed)",
        ])
        return CommitReport(group: group, pointID: pointID, pairs: pairs.map(\.id), targets: targets, journalBytesFreed: freed)
    }

    // MARK: after a crash

    /// Finishes what a killed failover or commit left: rolls `rolling-back` groups to their point and
    /// completes `committing` ones. `except` is a group the caller is about to move anyway. A group
    /// that cannot be finished now (its target is missing, say) is logged and left as it is — it
    /// stays failed over, so nothing replicates onto it — and does not hold up the others.
    public func finishInterrupted(except: String? = nil, progress: @escaping (FailoverProgress) -> Void = { _ in }) throws -> [String] {
        var finished: [String] = []
        for state in try catalog.failovers() where state.group != except && state.status != .atPoint {
            do {
                try finish(state, progress: progress)
                finished.append(state.group)
            } catch {
                logger.error("cannot finish the interrupted recovery work of a group", metadata: [
                    "group.id": "\(state.group)", "status": "\(state.status.rawValue)", "error": "\(error)"])
            }
        }
        return finished
    }

    private func finish(_ state: FailoverState, progress: @escaping (FailoverProgress) -> Void) throws {
        switch state.status {
        case .atPoint:
            return
        case .committing:
            logger.warning("finishing an interrupted commit", metadata: ["group.id": "\(state.group)"])
            _ = try finishCommit(group: state.group, pointID: state.pointID)
        case .rollingBack:
            logger.warning("finishing an interrupted failover", metadata: ["group.id": "\(state.group)", "point.id": "\(state.pointID)"])
            guard let point = try catalog.recoveryPoints(group: state.group).first(where: { $0.id == state.pointID }) else {
                throw RecoveryRefusal("the failover of group \(state.group) was to point \(state.pointID), which the catalog no longer has")
            }
            var pairs: [(PairInfo, AdmittedTarget)] = []
            for pair in try catalog.pairs(group: state.group) { pairs.append((pair, try resolveTarget(pair))) }
            _ = try execute(FailoverPlan(group: state.group, point: point, pairs: pairs), progress: progress)
            }
    }

    /// A pair id read back from the catalog, as a path component; a row with an id outside the
    /// grammar was not written by mt-agent and is refused.
    static func pathID(_ id: String) throws -> Identifier {
        do {
            return try Identifier(validating: id, kind: .pair)
        } catch {
            throw RecoveryRefusal("the catalog holds a pair whose id is not a valid name (\(error)); it was not written "
                + "by mt-agent — nothing was changed on disk; restore the catalog from a backup or remove that row")
        }
    }
}

extension RecoveryPoint {
    public var summary: PointSummary {
        PointSummary(id: id, tagID: tagID, kind: kind, name: name, sourceTime: sourceTime, recordedAt: recordedAt)
    }
}

extension Duration {
    var seconds: Double { Double(components.seconds) + Double(components.attoseconds) / 1e18 }
}
