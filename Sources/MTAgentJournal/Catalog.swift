import MTAgentCore
import Foundation
import GRDB

/// A pair as the catalog knows it. The state fields are a copy of the pair journal's newest COMMIT record,
/// written when they change or a tag becomes durable; the journal is the truth and `PairApplier.open`
/// repairs this copy after a crash.
public struct PairInfo: Sendable, Codable, Equatable {
    public var id: String
    public var group: String
    /// WWID or absolute path of the target disk.
    public var target: String
    public var sourceSize: UInt64
    public var state: PairState
    public var reason: String?
    public var hasBaseline: Bool
    public var resyncOffset: UInt64
    /// As of the last catalog update; may lag the journal's durableSeq.
    public var durableSeq: UInt64

    public init(id: String, group: String, target: String, sourceSize: UInt64, state: PairState = .new,
                reason: String? = nil, hasBaseline: Bool = false, resyncOffset: UInt64 = 0, durableSeq: UInt64 = 0) {
        self.id = id; self.group = group; self.target = target; self.sourceSize = sourceSize
        self.state = state; self.reason = reason; self.hasBaseline = hasBaseline
        self.resyncOffset = resyncOffset; self.durableSeq = durableSeq
    }
}

/// A disk the admin gave to a consistency group (`mt-agent targets assign DISK --group G`).
public struct TargetAssignment: Sendable, Codable, Equatable {
    /// WWID, or an absolute path for lab/test loop devices and files.
    public var target: String
    public var group: String
    public var assignedAt: Date
}

/// A point every in-sync pair of a group can be rolled back to.
public struct RecoveryPoint: Sendable, Codable, Equatable {
    /// The catalog's row id: what `failover --point ID` names.
    public var id: Int64
    public var group: String
    public var tagID: UInt64
    public var kind: TagKind
    public var name: String
    /// Unix ns on the source.
    public var sourceTime: UInt64
    public var recordedAt: Date
    /// The TAG record of each pair that makes up the point: restore a pair by undoing everything after it.
    public var positions: [String: JournalPosition]
}

public enum CatalogError: Error, Equatable, CustomStringConvertible {
    case pairConflict(id: String, registeredGroup: String, registeredTarget: String, group: String, target: String)
    case targetInUse(target: String, pair: String)
    case unknownPair(String)
    case notAssigned(String)
    case badRow(String)

    public var description: String {
        switch self {
        case .pairConflict(let id, let registeredGroup, let registeredTarget, let group, let target):
            return "pair \(id) is registered with target \(registeredTarget) in group \(registeredGroup); "
                + "it cannot be re-registered with target \(target) in group \(group) — use a new pair id"
        case .targetInUse(let target, let pair):
            return "target \(target) is already the target of pair \(pair); one disk can receive only one pair"
        case .unknownPair(let id):
            return "pair \(id) is not registered in the catalog"
        case .notAssigned(let target):
            return "target \(target) is not assigned to any group"
        case .badRow(let detail):
            return "catalog holds an unreadable row: \(detail)"
        }
    }
}

/// Groups, pairs, durable tags and recovery points, in SQLite (WAL, synchronous FULL).
/// Everything here except the assignments can be rebuilt from the pair journals.
public final class Catalog: Sendable {
    let pool: DatabasePool

    public init(path: String) throws {
        let directory = (path as NSString).deletingLastPathComponent
        if !directory.isEmpty { try makeDirectories(directory) }
        var configuration = Configuration()
        configuration.busyMode = .timeout(10)
        configuration.prepareDatabase { db in
            try db.execute(sql: "PRAGMA synchronous = FULL")
        }
        pool = try DatabasePool(path: path, configuration: configuration)
        try Self.migrator.migrate(pool)
    }

    private static var migrator: DatabaseMigrator {
        var migrator = DatabaseMigrator()
        migrator.registerMigration("v1") { db in
            try db.execute(sql: """
                CREATE TABLE assignment (
                    target TEXT PRIMARY KEY NOT NULL,
                    groupID TEXT NOT NULL,
                    assignedAt DOUBLE NOT NULL);
                CREATE TABLE pair (
                    id TEXT PRIMARY KEY NOT NULL,
                    groupID TEXT NOT NULL,
                    target TEXT NOT NULL UNIQUE,
                    sourceSize INTEGER NOT NULL,
                    state TEXT NOT NULL,
                    reason TEXT,
                    hasBaseline BOOLEAN NOT NULL,
                    resyncOffset INTEGER NOT NULL,
                    durableSeq INTEGER NOT NULL);
                CREATE TABLE pairTag (
                    pairID TEXT NOT NULL REFERENCES pair(id) ON DELETE CASCADE,
                    tagID INTEGER NOT NULL,
                    groupID TEXT NOT NULL,
                    kind INTEGER NOT NULL,
                    name TEXT NOT NULL,
                    sourceTime INTEGER NOT NULL,
                    seq INTEGER NOT NULL,
                    segment INTEGER NOT NULL,
                    byteOffset INTEGER NOT NULL,
                    PRIMARY KEY (pairID, tagID));
                CREATE INDEX pairTagByGroup ON pairTag(groupID, tagID);
                CREATE TABLE recoveryPoint (
                    id INTEGER PRIMARY KEY AUTOINCREMENT,
                    groupID TEXT NOT NULL,
                    tagID INTEGER NOT NULL,
                    kind INTEGER NOT NULL,
                    name TEXT NOT NULL,
                    sourceTime INTEGER NOT NULL,
                    recordedAt DOUBLE NOT NULL,
                    UNIQUE (groupID, tagID));
                CREATE TABLE recoveryPointPosition (
                    pointID INTEGER NOT NULL REFERENCES recoveryPoint(id) ON DELETE CASCADE,
                    pairID TEXT NOT NULL,
                    segment INTEGER NOT NULL,
                    byteOffset INTEGER NOT NULL,
                    PRIMARY KEY (pointID, pairID));
                """)
        }
        migrator.registerMigration("v2-failover-pruning") { db in
            try db.execute(sql: """
                CREATE TABLE failover (
                    groupID TEXT PRIMARY KEY NOT NULL,
                    pointID INTEGER NOT NULL,
                    status TEXT NOT NULL,
                    startedAt DOUBLE NOT NULL,
                    updatedAt DOUBLE NOT NULL);
                CREATE TABLE pruned (
                    groupID TEXT PRIMARY KEY NOT NULL,
                    throughTagID INTEGER NOT NULL,
                    spacePrunedPoints INTEGER NOT NULL DEFAULT 0,
                    spacePrunedAt DOUBLE);
                """)
        }
        return migrator
    }

    // MARK: Assignments

    /// Assigns (or re-assigns) a target disk to a group.
    public func assign(target identity: String, group: String) throws {
        try pool.write { db in
            try db.execute(
                sql: "INSERT OR REPLACE INTO assignment (target, groupID, assignedAt) VALUES (?, ?, ?)",
                arguments: [identity, group, Date().timeIntervalSince1970])
        }
    }

    public func unassign(target identity: String) throws {
        try pool.write { db in
            try db.execute(sql: "DELETE FROM assignment WHERE target = ?", arguments: [identity])
            if db.changesCount == 0 { throw CatalogError.notAssigned(identity) }
        }
    }

    public func assignments() throws -> [TargetAssignment] {
        try pool.read { db in
            try Row.fetchAll(db, sql: "SELECT * FROM assignment ORDER BY target").map { row in
                TargetAssignment(target: row["target"], group: row["groupID"],
                                 assignedAt: Date(timeIntervalSince1970: row["assignedAt"]))
            }
        }
    }

    // MARK: Pairs

    public func pair(id: String) throws -> PairInfo? {
        try pool.read { db in try Self.pair(db, id: id) }
    }

    public func pairs() throws -> [PairInfo] {
        try pool.read { db in
            try Row.fetchAll(db, sql: "SELECT * FROM pair ORDER BY groupID, id").map(Self.pairInfo)
        }
    }

    /// Idempotent: registering the same id, group and target again returns the row (with the new source
    /// size). A pair id never changes target or group, and a target receives only one pair, because undo
    /// records and recovery points are only meaningful for the disk they were taken from.
    @discardableResult
    public func registerPair(id: String, group: String, target: String, sourceSize: UInt64) throws -> PairInfo {
        // The last line of defence: an id becomes a directory name (the server refuses bad ones first).
        _ = try Identifier(validating: id, kind: .pair)
        _ = try Identifier(validating: group, kind: .group)
        return try pool.write { db in
            if let existing = try Self.pair(db, id: id) {
                guard existing.group == group, existing.target == target else {
                    throw CatalogError.pairConflict(id: id, registeredGroup: existing.group,
                                                    registeredTarget: existing.target, group: group, target: target)
                }
                try db.execute(sql: "UPDATE pair SET sourceSize = ? WHERE id = ?",
                               arguments: [Int64(bitPattern: sourceSize), id])
                var updated = existing
                updated.sourceSize = sourceSize
                return updated
            }
            if let other = try String.fetchOne(db, sql: "SELECT id FROM pair WHERE target = ?", arguments: [target]) {
                throw CatalogError.targetInUse(target: target, pair: other)
            }
            let info = PairInfo(id: id, group: group, target: target, sourceSize: sourceSize)
            try db.execute(
                sql: """
                    INSERT INTO pair (id, groupID, target, sourceSize, state, reason, hasBaseline, resyncOffset, durableSeq)
                    VALUES (?, ?, ?, ?, ?, NULL, 0, 0, 0)
                    """,
                arguments: [id, group, target, Int64(bitPattern: sourceSize), info.state.rawValue])
            return info
        }
    }

    // MARK: Recovery points

    /// Newest first.
    public func recoveryPoints(group: String?) throws -> [RecoveryPoint] {
        try pool.read { db in
            let rows: [Row]
            if let group {
                rows = try Row.fetchAll(db, sql: "SELECT * FROM recoveryPoint WHERE groupID = ? ORDER BY id DESC",
                                        arguments: [group])
            } else {
                rows = try Row.fetchAll(db, sql: "SELECT * FROM recoveryPoint ORDER BY id DESC")
            }
            // All positions in one query (not one per point: catalogs hold thousands of points).
            var positionsByPoint: [Int64: [String: JournalPosition]] = [:]
            let positionRows: [Row]
            if let group {
                positionRows = try Row.fetchAll(db, sql: """
                    SELECT p.* FROM recoveryPointPosition p JOIN recoveryPoint r ON r.id = p.pointID WHERE r.groupID = ?
                    """, arguments: [group])
            } else {
                positionRows = try Row.fetchAll(db, sql: "SELECT * FROM recoveryPointPosition")
            }
            for p in positionRows {
                positionsByPoint[p["pointID"], default: [:]][p["pairID"]] = JournalPosition(
                    segment: UInt32(truncatingIfNeeded: p["segment"] as Int64),
                    offset: UInt64(bitPattern: p["byteOffset"]))
            }
            return try rows.map { row in
                let pointID: Int64 = row["id"]
                let positions = positionsByPoint[pointID] ?? [:]
                guard let kind = TagKind(rawValue: UInt8(truncatingIfNeeded: row["kind"] as Int64)) else {
                    throw CatalogError.badRow("recovery point \(pointID) has tag kind \(row["kind"] as Int64)")
                }
                return RecoveryPoint(
                    id: pointID, group: row["groupID"], tagID: UInt64(bitPattern: row["tagID"]), kind: kind, name: row["name"],
                    sourceTime: UInt64(bitPattern: row["sourceTime"]),
                    recordedAt: Date(timeIntervalSince1970: row["recordedAt"]), positions: positions)
            }
        }
    }

    /// The journal positions of a pair's durable tags that the catalog knows, keyed by tag id.
    public func durableTags(pair id: String) throws -> [UInt64: JournalPosition] {
        try pool.read { db in
            var result: [UInt64: JournalPosition] = [:]
            for row in try Row.fetchAll(db, sql: "SELECT * FROM pairTag WHERE pairID = ?", arguments: [id]) {
                result[UInt64(bitPattern: row["tagID"])] = JournalPosition(
                    segment: UInt32(truncatingIfNeeded: row["segment"] as Int64),
                    offset: UInt64(bitPattern: row["byteOffset"]))
            }
            return result
        }
    }

    // MARK: Applier side

    struct Progress {
        var pairID: String
        var commit: CommitRecord
    }

    struct Tag {
        var seq: UInt64
        var tagID: UInt64
        var kind: TagKind
        var name: String
        var sourceTime: UInt64
        var position: JournalPosition
    }

    /// In one transaction: copies the pair's newest COMMIT into its row, stores its newly durable in-sync tags
    /// and inserts each tag's recovery point once every in-sync pair of the group has the tag.
    /// Returns the ids of the given tags whose recovery point exists afterwards.
    func record(_ progress: Progress, tags: [Tag]) throws -> Set<UInt64> {
        try pool.write { db in
            let c = progress.commit
            try db.execute(
                sql: """
                    UPDATE pair SET state = ?, reason = ?, hasBaseline = ?, resyncOffset = ?, durableSeq = ?
                    WHERE id = ?
                    """,
                arguments: [c.state.rawValue, c.reason.isEmpty ? nil : c.reason, c.hasBaseline,
                            Int64(bitPattern: c.resyncOffset), Int64(bitPattern: c.durableSeq), progress.pairID])
            guard db.changesCount > 0,
                  let group = try String.fetchOne(db, sql: "SELECT groupID FROM pair WHERE id = ?",
                                                  arguments: [progress.pairID])
            else { throw CatalogError.unknownPair(progress.pairID) }

            var complete: Set<UInt64> = []
            // A pruned tag's TAG record may survive in the segment the oldest kept point starts in;
            // re-opening the pair must not bring its point back.
            let prunedThrough = try Int64.fetchOne(db, sql: "SELECT throughTagID FROM pruned WHERE groupID = ?",
                                                   arguments: [group]).map { UInt64(bitPattern: $0) }
            for tag in tags {
                if let prunedThrough, tag.tagID <= prunedThrough { continue }
                let tagID = Int64(bitPattern: tag.tagID)
                try db.execute(
                    sql: """
                        INSERT OR IGNORE INTO pairTag
                            (pairID, tagID, groupID, kind, name, sourceTime, seq, segment, byteOffset)
                        VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)
                        """,
                    arguments: [progress.pairID, tagID, group, Int64(tag.kind.rawValue), tag.name,
                                Int64(bitPattern: tag.sourceTime), Int64(bitPattern: tag.seq),
                                Int64(tag.position.segment), Int64(bitPattern: tag.position.offset)])
                let inserted = db.changesCount > 0
                if try Bool.fetchOne(db, sql: "SELECT 1 FROM recoveryPoint WHERE groupID = ? AND tagID = ?",
                                     arguments: [group, tagID]) != nil {
                    complete.insert(tag.tagID)
                    continue
                }
                // A tag the catalog already had was judged when it was first stored.
                guard inserted, c.state == .inSync else { continue }
                let missing = try Int.fetchOne(db, sql: """
                    SELECT COUNT(*) FROM pair p
                    WHERE p.groupID = ? AND p.state = ?
                      AND NOT EXISTS (SELECT 1 FROM pairTag t WHERE t.pairID = p.id AND t.tagID = ?)
                    """, arguments: [group, PairState.inSync.rawValue, tagID]) ?? 0
                guard missing == 0 else { continue }
                try db.execute(
                    sql: """
                        INSERT INTO recoveryPoint (groupID, tagID, kind, name, sourceTime, recordedAt)
                        VALUES (?, ?, ?, ?, ?, ?)
                        """,
                    arguments: [group, tagID, Int64(tag.kind.rawValue), tag.name, Int64(bitPattern: tag.sourceTime),
                                Date().timeIntervalSince1970])
                let pointID = db.lastInsertedRowID
                try db.execute(
                    sql: """
                        INSERT INTO recoveryPointPosition (pointID, pairID, segment, byteOffset)
                        SELECT ?, t.pairID, t.segment, t.byteOffset FROM pairTag t JOIN pair p ON p.id = t.pairID
                        WHERE p.groupID = ? AND p.state = ? AND t.tagID = ?
                        """,
                    arguments: [pointID, group, PairState.inSync.rawValue, tagID])
                complete.insert(tag.tagID)
            }
            return complete
        }
    }

    private static func pair(_ db: Database, id: String) throws -> PairInfo? {
        try Row.fetchOne(db, sql: "SELECT * FROM pair WHERE id = ?", arguments: [id]).map(pairInfo)
    }

    private static func pairInfo(_ row: Row) throws -> PairInfo {
        let stateText: String = row["state"]
        guard let state = PairState(rawValue: stateText) else {
            throw CatalogError.badRow("pair \(row["id"] as String) has state \(stateText)")
        }
        return PairInfo(
            id: row["id"], group: row["groupID"], target: row["target"],
            sourceSize: UInt64(bitPattern: row["sourceSize"]), state: state, reason: row["reason"],
            hasBaseline: row["hasBaseline"], resyncOffset: UInt64(bitPattern: row["resyncOffset"]),
            durableSeq: UInt64(bitPattern: row["durableSeq"]))
    }
}
