import MTAgentCore
extension PairState {

    /// The byte stored in COMMIT records (docs/JOURNAL.md).
    var code: UInt8 {
        switch self {
        case .new: return 1
        case .resyncing: return 2
        case .inSync: return 3
        case .resyncRequired: return 4
        }
    }

    init?(code: UInt8) {
        switch code {
        case 1: self = .new
        case 2: self = .resyncing
        case 3: self = .inSync
        case 4: self = .resyncRequired
        default: return nil
        }
    }
}

/// What `PairApplier.accept(_:)` did with an op.
public enum Acceptance: Sendable, Equatable {
    /// Validated and queued; durable after the next `commit()`.
    case queued
    /// Already accepted earlier (a resend after a reconnect): ignored.
    case duplicate
    /// Not applied and the sequence did not advance; the refusal says why.
    case refused(PairRefusal)
}

/// Where a record starts in a pair's journal: segment number and byte offset inside that segment file.
/// Positions order records in the order they were appended.
public struct JournalPosition: Sendable, Codable, Hashable, Comparable {
    public var segment: UInt32
    public var offset: UInt64

    public init(segment: UInt32, offset: UInt64) {
        self.segment = segment
        self.offset = offset
    }

    public static func < (lhs: JournalPosition, rhs: JournalPosition) -> Bool {
        (lhs.segment, lhs.offset) < (rhs.segment, rhs.offset)
    }
}

/// A tag that became durable in a `commit()`.
public struct DurableTag: Sendable, Equatable {
    public var seq: UInt64
    public var tagID: UInt64
    public var kind: TagKind
    public var name: String
    public var sourceTime: UInt64
    /// Where its TAG record starts: restoring to this position brings the target back to this tag.
    public var position: JournalPosition
    /// False when the pair was not in sync at the tag: such a tag can never make a recovery point.
    public var eligible: Bool
    /// True when this tag completed the group's recovery point (or it already existed).
    public var recoveryPointComplete: Bool
}

/// The result of `PairApplier.commit()`.
public struct CommitOutcome: Sendable, Equatable {
    /// Everything up to this sequence number is durable: the server may ack it.
    public var durableSeq: UInt64
    public var state: PairState
    public var tags: [DurableTag]
}
