/// One change to a pair, in the pair's sequence order (docs/PROTOCOL.md §5). The server turns
/// frames into these; the journal's applier makes them durable.
public enum PairOp: Sendable, Equatable {
    /// Data for the target at `offset`; its checksum was verified on arrival.
    case write(seq: UInt64, offset: UInt64, data: [UInt8])
    /// A consistency mark, the same `tagID` in every pair of the group.
    case tag(seq: UInt64, tagID: UInt64, kind: TagKind, name: String, sourceTime: UInt64)
    /// Starts (or restarts) a resync; its `seq` becomes the new base, gaps before it are allowed.
    case resyncBegin(seq: UInt64)
    /// Target bytes `[0, through)` now equal the source.
    case resyncMark(seq: UInt64, through: UInt64)
    /// The target equals the source: the pair is in sync.
    case resyncDone(seq: UInt64)

    public var seq: UInt64 {
        switch self {
        case .write(let s, _, _), .tag(let s, _, _, _, _), .resyncBegin(let s), .resyncMark(let s, _), .resyncDone(let s): s
        }
    }
}

/// Crash-consistent (frequent, between write batches) or app-consistent (named, application quiesced).
public enum TagKind: UInt8, Sendable, Codable, Equatable {
    case crash = 1, app = 2

    /// "crash" or "app": how JSON output and the control socket name it.
    public var name: String { self == .app ? "app" : "crash" }

    public init(from decoder: any Decoder) throws {
        let text = try decoder.singleValueContainer().decode(String.self)
        switch text {
        case "crash": self = .crash
        case "app": self = .app
        default: throw DecodingError.dataCorrupted(.init(codingPath: decoder.codingPath, debugDescription: "tag kind \(text) is not crash or app"))
        }
    }

    public func encode(to encoder: any Encoder) throws {
        var container = encoder.singleValueContainer()
        try container.encode(name)
    }
}

/// Where a pair stands (docs/PROTOCOL.md §4, `PAIR_STATE.state`).
public enum PairState: String, Sendable, Codable, Equatable {
    case new
    case resyncing
    case inSync = "in-sync"
    case resyncRequired = "resync-required"
}
