import Crypto
import Logging
import MTAgentCore
import NIOCore
import NIOPosix

/// Where a pair's answers go: the connection that currently holds the pair, and its handle there.
struct PairSink: Sendable {
    let connection: UInt64
    let handle: UInt32
    let send: @Sendable (Frame) async -> Void
}

/// Feeds one pair's frames to its `ReplicaPair` in order, on the thread pool, with group commit:
/// while one batch is being made durable the next one is verified and the one after accumulates,
/// and one ACK answers a whole batch. Bounded: a batch takes at most `maxPendingBytes` (plus one
/// frame), and `enqueue` suspends while more than `maxPendingBytes` wait behind it — so the
/// connection keeps reading while a batch is fsynced, yet a slow target disk stops its reads and
/// TCP slows the sender. At most about 3 × `maxPendingBytes` of a pair's data is held.
///
/// Ending a pair (`stop` for a failover, `close` at shutdown or before a reopen) refuses new frames
/// at once, then waits for the worker — which owns the batch being applied and finishes only after
/// its last commit returned — and only then closes the pair: nothing reaches the target after
/// `stop` returns, so a failover's rollback never meets a late write.
actor PairDriver {
    enum Item {
        case op(PairOp.Pending)
        case hashes(offset: UInt64, chunkSize: Int, count: Int)
        case barrier(CheckedContinuation<Void, Never>)
    }

    let pair: any ReplicaPair
    let pairID: String
    let group: String
    let target: String
    let sourceSize: UInt64
    let pool: NIOThreadPool
    let maxPendingBytes: Int
    let metrics: PairMetrics
    var logger: Logger

    private var sink: PairSink?
    private var queue = CircularBuffer<Item>()
    /// Bytes of data queued and not yet taken into a batch.
    private var pendingBytes = 0
    /// The task running `work()`, while there is work; `end` awaits it. It owns the batch being
    /// applied (`work` awaits that before it returns), so when it is done nothing is on the pool.
    private var worker: Task<Void, Never>?
    private enum Life { case open, ending, closed }
    /// `open` until `stop` or `close` begins; from then on frames are refused.
    private var life = Life.open
    /// Set when a commit failed on an I/O error: the pair stays failed until closed and opened again.
    private(set) var failed = false
    private var capacityWaiters: [CheckedContinuation<Void, Never>] = []
    /// True once a refusal was reported, until a RESYNC_BEGIN is applied: one PAIR_ERROR per episode.
    private var refusalReported = false
    /// Data received, for the throughput `status` shows.
    private var rate = RateMeter()

    init(pair: any ReplicaPair, pairID: String, group: String, target: String, sourceSize: UInt64,
         pool: NIOThreadPool, maxPendingBytes: Int, metrics: ServerMetrics, logger: Logger) {
        self.pair = pair; self.pairID = pairID; self.group = group; self.target = target
        self.sourceSize = sourceSize; self.pool = pool; self.maxPendingBytes = maxPendingBytes
        self.metrics = metrics.pair(pairID, group: group)
        var logger = logger
        logger[metadataKey: "pair.id"] = "\(pairID)"
        logger[metadataKey: "group.id"] = "\(group)"
        self.logger = logger
        refusalReported = pair.status.state == .resyncRequired
    }

    /// True while the pair can take frames: not ended, not failed. The registry opens a pair
    /// whose driver is not usable again.
    var isUsable: Bool { life == .open && !failed }

    enum AttachOutcome: Sendable, Equatable {
        /// The connection holds the pair: report this state in PAIR_STATE.
        case attached(ReplicaStatus)
        /// Another connection attached while this one waited: it was told pair-taken-over.
        case takenOver
        /// The pair was stopped or closed meanwhile (the registry then opens it again).
        case ended
    }

    /// Hands the pair to a connection, after everything the previous one queued is durable; the
    /// previous connection is told.
    func attach(_ newSink: PairSink) async -> AttachOutcome {
        guard life == .open else { return .ended }
        // The sink changes before anything suspends: of two attaches at once the later one takes the
        // pair from the earlier one (and tells it), never the other way round.
        let old = sink
        sink = newSink
        if let old, old.connection != newSink.connection {
            await old.send(.pairError(handle: old.handle, code: .pairTakenOver, message: "pair \(pairID) was opened by another connection"))
        }
        await drain()
        guard life == .open else { return .ended }
        guard sink?.connection == newSink.connection else { return .takenOver }
        let status = pair.status
        metrics.acked(status.durableSeq)  // PAIR_STATE tells the sender this much is durable
        return .attached(status)
    }

    /// The pair's state with its current receive rate.
    func status() -> ReplicaStatus {
        var status = pair.status
        status.receivedBytesPerSecond = rate.perSecond(at: Self.monotonicSecond())
        return status
    }

    static func monotonicSecond() -> Int64 {
        var now = timespec()
        clock_gettime(CLOCK_MONOTONIC, &now)
        return Int64(now.tv_sec)
    }

    /// Forgets `connection` if it still holds the pair (its queued work is still applied).
    func detach(connection: UInt64) {
        if sink?.connection == connection { sink = nil }
    }

    func holds(connection: UInt64) -> Bool { sink?.connection == connection }

    /// Queues `op` from `connection`; false (and nothing queued) when another connection has
    /// taken the pair over since: a stale connection must never write.
    func enqueue(_ op: PairOp.Pending, from connection: UInt64) async -> Bool {
        guard life == .open, sink?.connection == connection else { return false }
        if op.data != nil {
            metrics.received(bytes: op.byteCount)
            rate.add(op.byteCount, at: Self.monotonicSecond())
        }
        queue.append(.op(op))
        pendingBytes += op.byteCount
        startWorker()
        while pendingBytes > maxPendingBytes {
            await withCheckedContinuation { capacityWaiters.append($0) }
        }
        return true
    }

    func requestHashes(offset: UInt64, chunkSize: Int, count: Int, from connection: UInt64) -> Bool {
        guard life == .open, sink?.connection == connection else { return false }
        queue.append(.hashes(offset: offset, chunkSize: chunkSize, count: count))
        startWorker()
        return true
    }

    /// Returns once everything queued before it is durable (or refused).
    func drain() async {
        await withCheckedContinuation { c in
            queue.append(.barrier(c))
            startWorker()
        }
    }

    private func startWorker() {
        guard worker == nil else { return }
        worker = Task { await self.work() }
    }

    /// Returns once the worker has finished everything queued, its last commit included.
    private func settle() async {
        while let worker { await worker.value }
    }

    /// Applies batches in order, one at a time. While one is applied (mostly waiting for the
    /// disks) the next is verified and copied out of its frames on another pool thread.
    private func work() async {
        var applying: Task<Void, Never>?
        while true {
            guard !queue.isEmpty else {
                // Items may arrive while the last apply finishes: look again after it.
                guard let last = applying else { break }
                await last.value
                applying = nil
                continue
            }
            switch queue.removeFirst() {
            case .barrier(let c):
                await applying?.value
                applying = nil
                c.resume()
            case .hashes(let offset, let chunkSize, let count):
                await applying?.value
                applying = nil
                await answerHashes(offset: offset, chunkSize: chunkSize, count: count)
            case .op(let first):
                var batch = [first]
                var bytes = first.byteCount
                while bytes < maxPendingBytes, case .op(let next)? = queue.first {
                    batch.append(next)
                    bytes += next.byteCount
                    queue.removeFirst()
                }
                pendingBytes -= bytes
                wakeCapacityWaiters()
                let verified = await verify(batch)
                await applying?.value
                applying = Task { await self.commit(verified) }
            }
        }
        worker = nil
    }

    private func wakeCapacityWaiters() {
        guard pendingBytes <= maxPendingBytes else { return }
        let waiters = capacityWaiters
        capacityWaiters = []
        for w in waiters { w.resume() }
    }

    /// A batch after its checksums were checked: its ops up to the first write that failed, with their
    /// data copied out of the frames (so the frames' buffers are released before the apply).
    struct VerifiedBatch: Sendable {
        var ops: [PairOp]
        var checksumFailure: String?
        var startsResync: Bool
        /// Held until the batch is applied: its data counts against the service-wide budget until then.
        var leases: [PendingBudget.Lease] = []
    }

    /// Runs on the thread pool: CPU work kept off the event loops and off the apply.
    private func verify(_ batch: [PairOp.Pending]) async -> Result<VerifiedBatch, Error> {
        do {
            return .success(try await pool.runIfActive { Self.verified(batch) })
        } catch {
            return .failure(error)
        }
    }

    private static func verified(_ batch: [PairOp.Pending]) -> VerifiedBatch {
        var ops: [PairOp] = []
        ops.reserveCapacity(batch.count)
        var failure: String?
        for pending in batch {
            guard let op = pending.verified() else {
                failure = "WRITE seq \(pending.op.seq): SHA-256 of the data does not match the frame's checksum"
                break
            }
            ops.append(op)
        }
        let startsResync = batch.contains { if case .resyncBegin = $0.op { true } else { false } }
        return VerifiedBatch(ops: ops, checksumFailure: failure, startsResync: startsResync, leases: batch.compactMap(\.lease))
    }

    private func commit(_ verified: Result<VerifiedBatch, Error>) async {
        let pair = self.pair
        let outcome: Result<(ApplyResult, VerifiedBatch), Error>
        do {
            let batch = try verified.get()
            outcome = .success((try await pool.runIfActive { try Self.apply(batch, to: pair) }, batch))
            // Applied: the service-wide budget gets this batch's bytes back before the ACK goes out.
            // (The next batch, verified meanwhile, and the queued frames keep theirs while the ACK
            // is written: a sender that never reads its ACKs holds at most its pair's share, §5.)
            for lease in batch.leases { lease.release() }
        } catch {
            outcome = .failure(error)
        }
        if case .failure(let error) = outcome {
            // The applier is failed now, whether or not a connection is there to be told: the next
            // OPEN_PAIR closes it and opens the pair again.
            failed = true
            logger.error("could not make writes durable; the pair is reopened by the next OPEN_PAIR", metadata: ["error": "\(error)"])
        }
        guard let sink else { return }
        switch outcome {
        case .success(let (result, batch)):
            // A RESYNC_BEGIN starts a new episode: a refusal after it (the store reports only
            // those) must reach the sender, or it would wait for acks that never come.
            if batch.startsResync { refusalReported = false }
            if let message = batch.checksumFailure, !refusalReported {
                refusalReported = true
                logger.error("write checksum did not verify; pair needs a resync", metadata: ["reason": "\(message)"])
                await sink.send(.pairError(handle: sink.handle, code: .checksumMismatch, message: message))
            } else if let refusal = result.refusal, !refusalReported {
                refusalReported = true
                logger.error("pair refused a frame", metadata: ["reason": "\(refusal)"])
                await sink.send(.pairError(handle: sink.handle, code: ErrorCode(refusal), message: refusal.description))
            }
            metrics.acked(result.durableSeq)
            await sink.send(.ack(handle: sink.handle, durableSeq: result.durableSeq))
        case .failure(let error):
            await sink.send(.pairError(handle: sink.handle, code: .ioError, message: "\(error)"))
        }
    }

    /// Runs on the thread pool: applies the verified ops; a checksum failure ends the batch there
    /// and puts the pair in resync.
    private static func apply(_ batch: VerifiedBatch, to pair: any ReplicaPair) throws -> ApplyResult {
        var result = try pair.apply(batch.ops)
        if let failure = batch.checksumFailure {
            try pair.requireResync(reason: failure)
            result.refusal = nil
        }
        return result
    }

    private func answerHashes(offset: UInt64, chunkSize: Int, count: Int) async {
        let pair = self.pair
        let outcome: Result<[UInt8], Error>
        do {
            outcome = .success(try await pool.runIfActive { try pair.chunkHashes(offset: offset, chunkSize: chunkSize, count: count) })
        } catch {
            outcome = .failure(error)
        }
        guard let sink else { return }
        switch outcome {
        case .success(let digests):
            await sink.send(.hashes(Frame.Hashes(handle: sink.handle, offset: offset, chunkSize: UInt32(chunkSize), digests: digests)))
        case .failure(let error):
            logger.error("could not hash the target", metadata: ["error": "\(error)"])
            await sink.send(.pairError(handle: sink.handle, code: .ioError, message: "reading the target: \(error)"))
        }
    }

    /// Ends the pair (shutdown, or before it is opened again): like `stop`, without telling the connection.
    func close() async {
        await end(notify: nil)
    }

    /// Ends the pair for good (its group was failed over): from now on its frames are refused, what
    /// was queued before becomes durable and is acked, the connection holding it gets `code`, and
    /// the pair is closed once its last apply has returned.
    func stop(code: ErrorCode, message: String) async {
        await end(notify: (code, message))
    }

    private func end(notify: (code: ErrorCode, message: String)?) async {
        guard life == .open else {
            // Another stop or close is ending it; once the worker is done nothing more is applied.
            await settle()
            return
        }
        life = .ending
        await settle()
        if let notify, let sink {
            await sink.send(.pairError(handle: sink.handle, code: notify.code, message: notify.message))
        }
        sink = nil
        life = .closed
        pair.close()
    }
}

extension ErrorCode {
    /// The PAIR_ERROR code of a refusal (docs/PROTOCOL.md §5).
    init(_ refusal: PairRefusal) {
        self = switch refusal {
        case .sequenceGap: .sequenceGap
        case .writeOutOfRange: .writeOutOfRange
        case .markOutOfRange, .outsideResync, .resyncRequired: .resyncRequired
        case .failed: .ioError
        }
    }
}

extension PairOp {
    /// An op as it arrived, before its checksum is verified and its data copied out of the frame.
    struct Pending: Sendable {
        var op: PairOp
        var data: ByteBuffer?
        var sha256: [UInt8]
        /// Its share of the service-wide `PendingBudget`, given back when the op is dropped.
        var lease: PendingBudget.Lease?

        init(_ op: PairOp) { self.op = op; data = nil; sha256 = [] }

        init(write: Frame.Write) {
            op = .write(seq: write.seq, offset: write.offset, data: [])
            data = write.data
            sha256 = write.sha256
        }

        var byteCount: Int { data?.readableBytes ?? 0 }

        /// The op with its data, or nil when the data does not match its SHA-256.
        func verified() -> PairOp? {
            guard let data, case .write(let seq, let offset, _) = op else { return op }
            let ok = data.withUnsafeReadableBytes { SHA256.hash(data: $0).elementsEqual(sha256) }
            guard ok else { return nil }
            return .write(seq: seq, offset: offset, data: Array(data.readableBytesView))
        }
    }
}
