/// Why a pair refused an op. The journal's applier decides, the server reports it: the PAIR_ERROR
/// code is chosen by a switch on the case (docs/PROTOCOL.md §5), never by reading the message, and
/// `description` is the message the sender and the log get.
public enum PairRefusal: Sendable, Equatable, CustomStringConvertible {
    /// The op's seq is not the next one after the highest accepted.
    case sequenceGap(expected: UInt64, got: UInt64)
    /// A WRITE reaching past the target's end (or whose end overflows).
    case writeOutOfRange(offset: UInt64, length: UInt64, targetSize: UInt64)
    /// A RESYNC_MARK past the target's end.
    case markOutOfRange(through: UInt64, targetSize: UInt64)
    /// RESYNC_MARK or RESYNC_DONE (`op`) while no resync is running.
    case outsideResync(op: String)
    /// The pair is in resync-required for `reason`: only RESYNC_BEGIN is accepted.
    case resyncRequired(reason: String)
    /// The pair failed on an I/O error: it must be closed and opened again (the next OPEN_PAIR does).
    case failed(reason: String)

    public var description: String {
        switch self {
        case .sequenceGap(let expected, let got):
            "sequence gap: expected \(expected), got \(got)"
        case .writeOutOfRange(let offset, let length, let targetSize):
            "write past the end of the target: \(offset)+\(length) > \(targetSize)"
        case .markOutOfRange(let through, let targetSize):
            "resync-mark past the end of the target: \(through) > \(targetSize)"
        case .outsideResync(let op):
            "\(op) outside a resync"
        case .resyncRequired(let reason):
            "the pair needs a resync (\(reason)): only resync-begin is accepted"
        case .failed(let reason):
            "the pair failed (\(reason)); open it again"
        }
    }

    /// True when the refusal put (or keeps) the pair in resync-required; false for a failed pair,
    /// which needs a reopen, not a resync.
    public var requiresResync: Bool {
        if case .failed = self { false } else { true }
    }
}
