import Foundation
import Glibc
import MTAgentCore
import MTAgentJournal
import MTAgentLinux

/// What one pruning pass did.
public struct PruneReport: Sendable, Equatable {
    public struct Step: Sendable, Equatable {
        public var group: String
        public var throughTagID: UInt64
        public var points: Int
        public var forSpace: Bool
    }
    public var steps: [Step] = []
    public var segmentsRemoved = 0
    public var bytesFreed: UInt64 = 0
    /// Free space is still under the reserve after pruning everything the policy allows.
    public var stillShort = false
}

extension Recovery {
    /// Removes the points older than the window (a group's newest stays), then — while the volume
    /// is under `reserve` and the policy is prune-oldest — the oldest points of all groups, and the
    /// journal segments only removed points needed. Failed-over groups are left alone: their
    /// journal is what moves their targets between points.
    public func prune(now: UInt64, windowNs: UInt64, pruneForSpace: Bool, reserve: UInt64,
                      freeBytes: () throws -> UInt64) throws -> PruneReport {
        var report = PruneReport()
        let frozen = Set(try catalog.failovers().map(\.group))
        func candidates() throws -> [PruningRules.Point] {
            try catalog.recoveryPoints(group: nil).filter { !frozen.contains($0.group) }
                .map { PruningRules.Point(group: $0.group, tagID: $0.tagID, sourceTime: $0.sourceTime) }
        }
        for (group, tagID) in PruningRules.expired(try candidates(), now: now, windowNs: windowNs).sorted(by: { $0.key < $1.key }) {
            let n = try catalog.prunePoints(group: group, through: tagID)
            report.steps.append(.init(group: group, throughTagID: tagID, points: n, forSpace: false))
            logger.info("pruned recovery points older than the retention window", metadata: [
                "group.id": "\(group)", "points": "\(n)", "through.tag": "\(tagID)"])
        }
        // Every group each time, so segments a crash left behind after pruning go now.
        for group in try catalog.groups() where !frozen.contains(group) {
            try removeUnneededSegments(group: group, into: &report)
        }
        guard try freeBytes() < reserve else { return report }
        guard pruneForSpace else {
            report.stillShort = true
            return report
        }
        while try freeBytes() < reserve {
            guard let oldest = PruningRules.oldestRemovable(try candidates()) else {
                report.stillShort = true
                break
            }
            let n = try catalog.prunePoints(group: oldest.group, through: oldest.tagID, forSpace: true)
            report.steps.append(.init(group: oldest.group, throughTagID: oldest.tagID, points: n, forSpace: true))
            let before = report.bytesFreed
            try removeUnneededSegments(group: oldest.group, into: &report)
            logger.warning("retention volume short of space: pruned the oldest recovery point early (space_policy prune-oldest)", metadata: [
                "group.id": "\(oldest.group)", "tag": "\(oldest.tagID)", "bytes.freed": "\(report.bytesFreed - before)",
                "free.bytes": "\((try? freeBytes()) ?? 0)", "reserve.bytes": "\(reserve)"])
        }
        return report
    }

    /// Deletes each pair's segments older than the one holding the oldest kept point's TAG record.
    private func removeUnneededSegments(group: String, into report: inout PruneReport) throws {
        guard let oldest = try catalog.recoveryPoints(group: group).min(by: { $0.tagID < $1.tagID }) else { return }
        for pair in try catalog.pairs(group: group) {
            guard let position = oldest.positions[pair.id] else { continue }
            guard let id = Identifier(pair.id) else {
                logger.error("not pruning a pair whose catalog id is not a valid name", metadata: [
                    "group.id": "\(group)", "error": "\(IdentifierError(kind: .pair, value: pair.id))"])
                continue
            }
            let (count, bytes) = try JournalPruning.removeSegments(layout: layout, pair: id, before: position.segment)
            report.segmentsRemoved += count
            report.bytesFreed += bytes
        }
    }
}

/// The free bytes an unprivileged writer may use (f_bavail), measured as `check retention` does.
func availableBytes(_ path: String) throws -> UInt64 {
    try LiveVolumes().space(of: path).availableBytes
}

/// The bytes of the files under `path` (0 when it does not exist).
func treeBytes(_ path: String) -> UInt64 {
    let fm = FileManager.default
    return ((try? fm.subpathsOfDirectory(atPath: path)) ?? []).reduce(0) { sum, name in
        sum + (((try? fm.attributesOfItem(atPath: path + "/" + name))?[.size] as? UInt64) ?? 0)
    }
}
