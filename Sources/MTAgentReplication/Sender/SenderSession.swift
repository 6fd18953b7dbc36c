import Crypto
import Logging
import MTAgentCore
import NIOCore
import NIOPosix

/// One pair as the sender names it.
public struct PairSpec: Sendable {
    public var pairID: String
    public var group: String
    public var target: String
    public var sourceSize: UInt64
    public init(pairID: String, group: String, target: String, sourceSize: UInt64) {
        self.pairID = pairID; self.group = group; self.target = target; self.sourceSize = sourceSize
    }
}

/// Errors that stop the sender (not retried).
public enum SenderError: Error, CustomStringConvertible {
    case pairRefused(pair: String, code: ErrorCode, message: String)
    case source(String)
    /// The sender's state directory (docs/sender.md "Resuming").
    case state(String)

    public var description: String {
        switch self {
        case .pairRefused(let pair, let code, let message): "the master target refused pair \(pair) (\(code)): \(message)"
        case .source(let m), .state(let m): m
        }
    }
}

/// The pair needs a resync before anything else (gap, checksum, out of range, or it was never synced).
struct NeedsResync: Error {}

/// Counters for progress and the final summary.
public struct SenderStats: Sendable, Codable, Equatable {
    public var bytesSent: UInt64 = 0
    public var writes: UInt64 = 0
    public var tags: UInt64 = 0
    public var reconnects: UInt64 = 0
    public var hashedChunks: UInt64 = 0
    public var differingChunks: UInt64 = 0
    public init() {}
}

/// The sender's connection to one MT and its pairs: sequence numbers, everything unacked kept
/// for resending, reconnects with backoff. Modes (resync, follow, replay) drive it.
public actor SenderSession {
    final class Stream {
        let spec: PairSpec
        let handle: UInt32
        var nextSeq: UInt64 = 1
        /// Every frame sent and not yet acked, oldest first.
        var unacked = CircularBuffer<(seq: UInt64, frame: Frame, bytes: Int)>()
        var unackedBytes = 0
        var durable: UInt64 = 0
        var report: Frame.PairStateReport?
        var needsResync = false
        /// Set by `requireResync` until a resync completes: the source changed where the MT did not
        /// see it, so no part of it that an earlier run compared can be trusted, not even the part
        /// an interrupted resync covered.
        var sourceChangedUnseen = false
        /// The MT's `resyncOffset` while its last PAIR_STATE said `resyncing` and nothing has been
        /// sent on the pair since: a resync may continue there without RESYNC_BEGIN (PROTOCOL.md §6).
        var resumableAt: UInt64?
        var stateWaiter: CheckedContinuation<Frame.PairStateReport, Error>?
        var hashWaiters: [AsyncThrowingStream<Frame.Hashes, Error>.Continuation] = []
        var ackWaiters: [CheckedContinuation<Void, Error>] = []
        init(spec: PairSpec, handle: UInt32) { self.spec = spec; self.handle = handle }

        func dropAcked() {
            while let first = unacked.first, first.seq <= durable {
                unackedBytes -= first.bytes
                unacked.removeFirst()
            }
        }
        func clearUnacked() { unacked.removeAll(); unackedBytes = 0 }
    }

    let configuration: SenderConfiguration
    let group: any EventLoopGroup
    var logger: Logger
    /// Unacked bytes per pair before `send` waits for acks (docs/PROTOCOL.md §5).
    let maxUnackedBytes: Int
    private var streams: [UInt32: Stream] = [:]
    private var link: SenderLink?
    private var generation = 0
    private var linkWaiter: CheckedContinuation<Void, Error>?
    public private(set) var stats = SenderStats()

    public init(configuration: SenderConfiguration, pairs: [PairSpec], group: any EventLoopGroup = MultiThreadedEventLoopGroup.singleton,
                maxUnackedBytes: Int = 64 << 20, logger: Logger) {
        self.configuration = configuration
        self.group = group
        self.logger = logger
        self.maxUnackedBytes = maxUnackedBytes
        for (i, spec) in pairs.enumerated() {
            streams[UInt32(i + 1)] = Stream(spec: spec, handle: UInt32(i + 1))
        }
    }

    public var handles: [UInt32] { streams.keys.sorted() }
    public func spec(_ handle: UInt32) -> PairSpec { streams[handle]!.spec }
    public func report(_ handle: UInt32) -> Frame.PairStateReport? { streams[handle]?.report }
    public func needsResync(_ handle: UInt32) -> Bool { streams[handle]!.needsResync }

    /// Makes the pair resync before anything else is sent, whatever state the MT reports: the
    /// caller knows the source changed in ways the MT may not have seen (the last run of the
    /// sender did not end cleanly). Call before `connect`.
    public func requireResync(_ handle: UInt32) {
        streams[handle]!.needsResync = true
        streams[handle]!.sourceChangedUnseen = true
    }

    /// True while the source may differ from the target anywhere, also below an interrupted
    /// resync's mark (see `requireResync`), until `resyncCompleted`.
    public func sourceChangedUnseen(_ handle: UInt32) -> Bool { streams[handle]?.sourceChangedUnseen ?? false }

    /// A resync of the pair is durable: from here the MT has seen every change of the source.
    public func resyncCompleted(_ handle: UInt32) { streams[handle]?.sourceChangedUnseen = false }

    // MARK: connecting

    /// Connects (retrying retryable failures with backoff, up to `deadline`), opens every pair
    /// and resends what the MT has not made durable.
    public func connect(retryFor deadline: Duration = .seconds(3600)) async throws {
        var delay: Duration = .milliseconds(200)
        let start = ContinuousClock.now
        while true {
            do {
                try await establish()
                return
            } catch let error as LinkError where error.isRetryable && ContinuousClock.now - start < deadline {
                logger.warning("cannot reach the master target; retrying", metadata: ["error": "\(error)", "retry.in": "\(delay)"])
                try await Task.sleep(for: delay)
                delay = min(delay * 2, .seconds(5))
            }
        }
    }

    private func establish() async throws {
        generation += 1
        let gen = generation
        let (config, group, logger) = (configuration, self.group, self.logger)
        try await withCheckedThrowingContinuation { (c: CheckedContinuation<Void, Error>) in
            linkWaiter = c
            Task {
                do {
                    var (link, inbound) = try await SenderLink.connect(config, group: group, logger: logger)
                    await self.linkUp(link, generation: gen)
                    while let frame = try await inbound.next() {
                        await self.received(frame, generation: gen)
                    }
                    await self.linkDown(LinkError.lost("the master target closed the connection"), generation: gen)
                } catch {
                    await self.linkDown(error, generation: gen)
                }
            }
        }
        // Open every pair and resend what is not durable.
        for handle in handles {
            let stream = streams[handle]!
            let report = try await withCheckedThrowingContinuation { (c: CheckedContinuation<Frame.PairStateReport, Error>) in
                stream.stateWaiter = c
                Task { await self.write(.openPair(Frame.OpenPair(handle: handle, pairID: stream.spec.pairID, groupID: stream.spec.group,
                                                                 target: stream.spec.target, sourceSize: stream.spec.sourceSize))) }
            }
            stream.report = report
            stream.durable = max(stream.durable, report.durableSeq)
            stream.nextSeq = max(stream.nextSeq, report.durableSeq + 1)
            stream.dropAcked()
            stream.resumableAt = report.state == .resyncing ? report.resyncOffset : nil
            if report.state == .inSync && !stream.needsResync {
                for item in stream.unacked { await write(item.frame) }
            } else {
                // Whatever was unacked is superseded by the resync the mode loop now runs.
                stream.needsResync = true
                stream.clearUnacked()
            }
            logger.info("pair open", metadata: ["pair.id": "\(stream.spec.pairID)", "state": "\(report.state.pairState.rawValue)",
                                                "durable.seq": "\(report.durableSeq)", "resync.offset": "\(report.resyncOffset)"])
        }
    }

    private func linkUp(_ link: SenderLink, generation gen: Int) {
        guard gen == generation else { return }
        self.link = link
        linkWaiter?.resume()
        linkWaiter = nil
    }

    private func linkDown(_ error: Error, generation gen: Int) {
        guard gen == generation else { return }
        let linkError = (error as? LinkError) ?? LinkError.lost("\(error)")
        if link != nil { logger.warning("connection lost", metadata: ["error": "\(linkError)"]) }
        if let link { link.shutdown() }
        link = nil
        linkWaiter?.resume(throwing: linkError)
        linkWaiter = nil
        for stream in streams.values {
            stream.stateWaiter?.resume(throwing: linkError); stream.stateWaiter = nil
            for w in stream.hashWaiters { w.finish(throwing: linkError) }
            stream.hashWaiters = []
            for w in stream.ackWaiters { w.resume(throwing: linkError) }
            stream.ackWaiters = []
        }
    }

    private func received(_ frame: Frame, generation gen: Int) {
        guard gen == generation else { return }
        switch frame {
        case .ack(let handle, let durable):
            guard let s = streams[handle] else { return }
            s.durable = max(s.durable, durable)
            s.dropAcked()
            let waiters = s.ackWaiters
            s.ackWaiters = []
            for w in waiters { w.resume() }
        case .pairState(let report):
            streams[report.handle]?.stateWaiter?.resume(returning: report)
            streams[report.handle]?.stateWaiter = nil
        case .hashes(let h):
            guard let s = streams[h.handle], !s.hashWaiters.isEmpty else { return }
            let w = s.hashWaiters.removeFirst()
            w.yield(h)
            w.finish()
        case .pairError(let handle, let code, let message):
            guard let s = streams[handle] else { return }
            if let w = s.stateWaiter {
                s.stateWaiter = nil
                w.resume(throwing: SenderError.pairRefused(pair: s.spec.pairID, code: code, message: message))
                return
            }
            logger.warning("pair error", metadata: ["pair.id": "\(s.spec.pairID)", "error.code": "\(code)", "error": "\(message)"])
            switch code {
            case .sequenceGap, .checksumMismatch, .writeOutOfRange, .resyncRequired:
                s.needsResync = true
                s.resumableAt = nil
                s.clearUnacked()
                for w in s.hashWaiters { w.finish(throwing: NeedsResync()) }
                s.hashWaiters = []
                for w in s.ackWaiters { w.resume(throwing: NeedsResync()) }
                s.ackWaiters = []
            default:
                // io-error, taken over, bad request: drop the connection and start again.
                linkDown(LinkError.lost("pair \(s.spec.pairID): \(code): \(message)"), generation: gen)
            }
        case .error(let code, let message):
            linkDown(LinkError.remote(code: code, message: message), generation: gen)
        case .heartbeat:
            break
        default:
            linkDown(LinkError.lost("unexpected frame type 0x\(String(frame.type, radix: 16)) from the master target"), generation: gen)
        }
    }

    private func write(_ frame: Frame) async {
        guard let link else { return }
        do { try await link.channel.outbound.write(frame) } catch {
            linkDown(LinkError.lost("write failed: \(error)"), generation: generation)
        }
    }

    private func requireLink() throws {
        guard link != nil else { throw LinkError.lost("not connected") }
    }

    // MARK: sending

    /// Sends one sequenced frame; waits while too much is unacked.
    private func sequenced(_ handle: UInt32, bytes: Int, _ make: (UInt64) -> Frame) async throws {
        let s = streams[handle]!
        if s.needsResync { throw NeedsResync() }
        s.resumableAt = nil
        while s.unackedBytes > maxUnackedBytes {
            try requireLink()
            try await withCheckedThrowingContinuation { s.ackWaiters.append($0) }
            if s.needsResync { throw NeedsResync() }
        }
        try requireLink()
        let seq = s.nextSeq
        s.nextSeq += 1
        let frame = make(seq)
        s.unacked.append((seq, frame, bytes))
        s.unackedBytes += bytes
        // From here the frame is the session's: if the connection drops it is resent after the
        // reconnect, so the caller must not send it again.
        await write(frame)
    }

    public func sendWrite(_ handle: UInt32, offset: UInt64, data: ByteBuffer) async throws {
        let sha = data.withUnsafeReadableBytes { Array(SHA256.hash(data: $0)) }
        try await sequenced(handle, bytes: data.readableBytes) { .write(Frame.Write(handle: handle, seq: $0, offset: offset, sha256: sha, data: data)) }
        stats.writes += 1
        stats.bytesSent += UInt64(data.readableBytes)
    }

    public func sendTag(_ handle: UInt32, tagID: UInt64, kind: TagKind, name: String, sourceTime: UInt64) async throws {
        try await sequenced(handle, bytes: 0) { .tag(Frame.TagFrame(handle: handle, seq: $0, tagID: tagID, kind: kind.rawValue, sourceTime: sourceTime, name: name)) }
        stats.tags += 1
    }

    /// Starts a resync: a new base sequence, nothing unacked before it matters any more.
    public func beginResync(_ handle: UInt32) async throws {
        let s = streams[handle]!
        try requireLink()
        s.needsResync = false
        s.resumableAt = nil
        s.clearUnacked()
        s.nextSeq += 1  // any seq above the last accepted is a valid new base
        try await sequenced(handle, bytes: 0) { .resyncBegin(handle: handle, seq: $0) }
    }

    /// Continues the resync the MT reported as `resyncing` on this connection, without
    /// RESYNC_BEGIN (which would reset the MT's progress to 0): the next frame carries the MT's
    /// `durableSeq + 1`. Returns the offset the MT's resync reached, or nil when there is no
    /// resync to continue (the MT is in another state, or something was sent since its report).
    public func continueResync(_ handle: UInt32) throws -> UInt64? {
        let s = streams[handle]!
        try requireLink()
        guard let at = s.resumableAt, let report = s.report, report.state == .resyncing else { return nil }
        s.resumableAt = nil
        s.needsResync = false
        s.clearUnacked()
        s.nextSeq = report.durableSeq + 1
        return at
    }

    public func sendResyncMark(_ handle: UInt32, through: UInt64) async throws {
        try await sequenced(handle, bytes: 0) { .resyncMark(handle: handle, seq: $0, through: through) }
    }

    public func sendResyncDone(_ handle: UInt32) async throws {
        try await sequenced(handle, bytes: 0) { .resyncDone(handle: handle, seq: $0) }
    }

    /// Asks for the target's chunk hashes; the answer arrives on the returned stream (registered
    /// before the request leaves, so it cannot be missed). Several may be outstanding.
    public func requestHashes(_ handle: UInt32, offset: UInt64, chunkSize: Int, count: Int) async throws -> AsyncThrowingStream<Frame.Hashes, Error> {
        let s = streams[handle]!
        try requireLink()
        let (stream, continuation) = AsyncThrowingStream<Frame.Hashes, Error>.makeStream(bufferingPolicy: .bufferingNewest(1))
        s.hashWaiters.append(continuation)
        await write(.hashRequest(handle: handle, offset: offset, chunkSize: UInt32(chunkSize), count: UInt32(count)))
        return stream
    }

    /// Waits until everything sent on the pair is acked.
    public func waitDurable(_ handle: UInt32) async throws {
        let s = streams[handle]!
        while s.durable < s.nextSeq - 1 {
            if s.needsResync { throw NeedsResync() }
            try requireLink()
            try await withCheckedThrowingContinuation { s.ackWaiters.append($0) }
        }
    }

    public func durableSeq(_ handle: UInt32) -> UInt64 { streams[handle]!.durable }

    func countHashes(total: Int, differing: Int) {
        stats.hashedChunks += UInt64(total)
        stats.differingChunks += UInt64(differing)
    }

    func countReconnect() { stats.reconnects += 1 }

    public func close() async {
        generation += 1  // what the closing connection reports now is expected, not news
        if let link { link.shutdown() }
        link = nil
    }
}

extension AsyncThrowingStream where Element == Frame.Hashes, Failure == Error {
    /// The one HASHES answer.
    func answer() async throws -> Frame.Hashes {
        for try await h in self { return h }
        throw LinkError.lost("no answer to HASH_REQUEST")
    }
}
