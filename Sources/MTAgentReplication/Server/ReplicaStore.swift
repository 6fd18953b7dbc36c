import MTAgentCore

/// The MT's side of a pair as the server sees it: where frames become durable. The service wires
/// the journal's applier in; tests use an in-memory store. Calls block (disk I/O) and are made on
/// a thread pool, one at a time per pair.
public protocol ReplicaPair: AnyObject, Sendable {
    /// The pair as it stands now: reported in PAIR_STATE.
    var status: ReplicaStatus { get }
    /// Accepts `ops` in order (duplicates ignored, gaps and out-of-range writes refused) and makes
    /// every accepted one durable before returning. `ApplyResult.refusal` is the first refusal after
    /// the batch's last accepted RESYNC_BEGIN (refusals before it belong to the episode it ends).
    func apply(_ ops: [PairOp]) throws -> ApplyResult
    /// Puts the pair in resync-required (e.g. a WRITE whose checksum did not verify).
    func requireResync(reason: String) throws
    /// SHA-256 of `count` chunks of the target from `offset` (clamped to its end), concatenated.
    func chunkHashes(offset: UInt64, chunkSize: Int, count: Int) throws -> [UInt8]
    /// Releases the target and journal; the pair can be opened again.
    func close()
}

public struct ReplicaStatus: Sendable, Equatable {
    public var state: PairState
    public var durableSeq: UInt64
    public var resyncOffset: UInt64
    public var targetSize: UInt64
    public var reason: String?
    /// Data bytes received per second over the last 10 s (set by the listener for an open pair).
    public var receivedBytesPerSecond: Double = 0
    public init(state: PairState, durableSeq: UInt64, resyncOffset: UInt64, targetSize: UInt64, reason: String? = nil) {
        self.state = state; self.durableSeq = durableSeq; self.resyncOffset = resyncOffset
        self.targetSize = targetSize; self.reason = reason
    }
}

public struct ApplyResult: Sendable, Equatable {
    /// Everything with seq ≤ this is durable.
    public var durableSeq: UInt64
    /// Set when an op of this batch was refused (a gap, an out-of-range write…): the first such
    /// refusal. Its case chooses the PAIR_ERROR code, its description is the message.
    public var refusal: PairRefusal?
    public init(durableSeq: UInt64, refusal: PairRefusal? = nil) {
        self.durableSeq = durableSeq; self.refusal = refusal
    }
}

/// Opens pairs on request of OPEN_PAIR after checking the assignment and every target rule.
public protocol ReplicaStore: Sendable {
    /// Throws the refusal when the target may not (or no longer) take the pair: unassigned,
    /// mounted since, too small… Checked again at every OPEN_PAIR of a pair already open, since
    /// the admin or the machine may have changed the disk in between.
    func admit(pairID: String, group: String, target: String, sourceSize: UInt64) throws
    /// Admits, then opens the target and the pair's journal.
    func open(pairID: String, group: String, target: String, sourceSize: UInt64) throws -> any ReplicaPair
}

/// Why the store would not open a pair; the message names the rule and the fix.
public struct StoreRefusal: Error, Sendable, Equatable, CustomStringConvertible {
    public enum Kind: Sendable, Equatable { case targetRefused, pairConflict, ioError, failedOver, retentionFull, takenOver }
    public var kind: Kind
    public var message: String
    public init(_ kind: Kind, _ message: String) { self.kind = kind; self.message = message }
    public var description: String { message }
}
