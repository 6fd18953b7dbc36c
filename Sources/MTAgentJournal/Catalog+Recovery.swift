import Foundation
import GRDB
import MTAgentCore

/// A group that was failed over: replication stays stopped for it until commit.
public struct FailoverState: Sendable, Codable, Equatable {
    public enum Status: String, Sendable, Codable {
        /// Targets are being moved to the point; a restart or the next failover finishes the move.
        case rollingBack = "rolling-back"
        /// Every target is at the point; `failover` may move them again, `commit` makes it final.
        case atPoint = "at-point"
        /// Commit started: the journal is being dropped; a restart or the next commit finishes it.
        case committing
    }
    public var group: String
    public var pointID: Int64
    public var status: Status
    public var startedAt: Date
    public var updatedAt: Date
}

extension Catalog {
    /// Every group with a registered pair or an assigned target, sorted.
    public func groups() throws -> [String] {
        try pool.read { db in
            try String.fetchAll(db, sql: "SELECT groupID FROM pair UNION SELECT groupID FROM assignment ORDER BY 1")
        }
    }

    public func pairs(group: String) throws -> [PairInfo] {
        try pairs().filter { $0.group == group }
    }

    public func failover(group: String) throws -> FailoverState? {
        try failovers().first { $0.group == group }
    }

    public func failovers() throws -> [FailoverState] {
        try pool.read { db in
            try Row.fetchAll(db, sql: "SELECT * FROM failover ORDER BY groupID").map { row in
                let text: String = row["status"]
                guard let status = FailoverState.Status(rawValue: text) else {
                    throw CatalogError.badRow("failover of group \(row["groupID"] as String) has status \(text)")
                }
                return FailoverState(group: row["groupID"], pointID: row["pointID"], status: status,
                                     startedAt: Date(timeIntervalSince1970: row["startedAt"]),
                                     updatedAt: Date(timeIntervalSince1970: row["updatedAt"]))
            }
        }
    }

    /// Records (durably, before any target is touched) that `group` is being moved to `pointID`.
    public func setFailover(group: String, pointID: Int64, status: FailoverState.Status) throws {
        try pool.write { db in
            let now = Date().timeIntervalSince1970
            try db.execute(sql: """
                INSERT INTO failover (groupID, pointID, status, startedAt, updatedAt) VALUES (?, ?, ?, ?, ?)
                ON CONFLICT(groupID) DO UPDATE SET pointID = excluded.pointID, status = excluded.status,
                    updatedAt = excluded.updatedAt
                """, arguments: [group, pointID, status.rawValue, now, now])
        }
    }

    /// The last step of commit: forgets the group — its points, tags, pairs, target assignments,
    /// pruning mark and failover — in one transaction.
    public func dropGroup(_ group: String) throws {
        try pool.write { db in
            try db.execute(sql: "DELETE FROM recoveryPoint WHERE groupID = ?", arguments: [group])
            try db.execute(sql: "DELETE FROM pairTag WHERE groupID = ?", arguments: [group])
            try db.execute(sql: "DELETE FROM pair WHERE groupID = ?", arguments: [group])
            try db.execute(sql: "DELETE FROM assignment WHERE groupID = ?", arguments: [group])
            try db.execute(sql: "DELETE FROM pruned WHERE groupID = ?", arguments: [group])
            try db.execute(sql: "DELETE FROM failover WHERE groupID = ?", arguments: [group])
        }
    }

    /// Removes the points of `group` with tag ids up to `tagID` and every durable tag up to it, and
    /// remembers that mark so a re-opened pair does not record them again. `forSpace`: they went
    /// before their time because the retention volume ran short (shown by `points`).
    public func prunePoints(group: String, through tagID: UInt64, forSpace: Bool = false) throws -> Int {
        try pool.write { db in
            let mark = Int64(bitPattern: tagID)
            try db.execute(sql: "DELETE FROM recoveryPoint WHERE groupID = ? AND tagID <= ?", arguments: [group, mark])
            let removed = db.changesCount
            try db.execute(sql: "DELETE FROM pairTag WHERE groupID = ? AND tagID <= ?", arguments: [group, mark])
            try db.execute(sql: """
                INSERT INTO pruned (groupID, throughTagID, spacePrunedPoints, spacePrunedAt) VALUES (?, ?, ?, ?)
                ON CONFLICT(groupID) DO UPDATE SET throughTagID = max(throughTagID, excluded.throughTagID),
                    spacePrunedPoints = spacePrunedPoints + excluded.spacePrunedPoints,
                    spacePrunedAt = coalesce(excluded.spacePrunedAt, spacePrunedAt)
                """, arguments: [group, mark, forSpace ? removed : 0, forSpace ? Date().timeIntervalSince1970 : nil])
            return removed
        }
    }

    /// How many points of `group` were pruned early for space, and when last.
    public func spacePruning(group: String) throws -> (points: Int, last: Date)? {
        try pool.read { db in
            guard let row = try Row.fetchOne(db, sql: "SELECT spacePrunedPoints, spacePrunedAt FROM pruned WHERE groupID = ?",
                                             arguments: [group]),
                  let at = row["spacePrunedAt"] as Double?, (row["spacePrunedPoints"] as Int) > 0 else { return nil }
            return (row["spacePrunedPoints"], Date(timeIntervalSince1970: at))
        }
    }
}
