import Crypto
import Glibc
import Logging
import MTAgentCore
import NIOConcurrencyHelpers
import NIOCore
import NIOPosix

/// The sender's modes over a session: differential resync, continuous follow with tags, and
/// trace replay. Each survives reconnects: a lost connection is re-established (the session
/// resends what is unacked) and a pair the MT puts in resync-required is resynced, then the mode
/// goes on.
public final class Replicator: Sendable {
    public struct Options: Sendable {
        /// Resync and change-tracking granularity.
        public var chunkSize = 4096
        /// Chunks per HASH_REQUEST (64 MiB windows at 4 KiB).
        public var windowChunks = 16384
        /// Largest WRITE sent.
        public var maxWrite = 1 << 20
        /// Copy everything in a resync without asking for the target's hashes.
        public var full = false
        public init() {}
    }

    /// Progress, reported after every window and write batch.
    public struct Progress: Sendable {
        public var phase: String
        public var done: UInt64
        public var total: UInt64
        public var stats: SenderStats
    }

    let session: SenderSession
    let sources: [UInt32: SourceDevice]
    let pool: NIOThreadPool
    let options: Options
    let logger: Logger
    let progress: @Sendable (Progress) -> Void
    /// `fsfreeze -f` (true) / `-u` (false) of a mount point: the caller runs the command.
    let freezer: @Sendable (_ mountpoint: String, _ freeze: Bool) throws -> Void
    /// Hash of every chunk of every source as last sent: what `follow` compares against.
    let tracked = NIOLockedValueBox<[UInt32: [UInt8]]>([:])
    let lastTagID = NIOLockedValueBox<UInt64>(0)

    public init(session: SenderSession, sources: [UInt32: SourceDevice], pool: NIOThreadPool, options: Options = Options(),
                logger: Logger, progress: @escaping @Sendable (Progress) -> Void = { _ in },
                freezer: @escaping @Sendable (String, Bool) throws -> Void = { mp, _ in
                    throw SenderError.source("no way to freeze \(mp) was given")
                }) {
        self.session = session; self.sources = sources; self.pool = pool; self.options = options
        self.logger = logger; self.progress = progress; self.freezer = freezer
    }

    // MARK: resilience

    /// Runs `step` until it completes: reconnects after a lost connection; resyncs pairs the MT
    /// put in resync-required. `step` must be safe to run again after a failure.
    func resilient(_ what: String, resyncing: UInt32? = nil, _ step: () async throws -> Void) async throws {
        while true {
            do {
                try await resyncPairsThatNeedIt(except: resyncing)
                try await step()
                return
            } catch let error as LinkError where error.isRetryable {
                logger.warning("\(what): connection lost; reconnecting", metadata: ["error": "\(error)"])
                await session.countReconnect()
                try await session.connect()
            } catch is NeedsResync {
                logger.warning("\(what): the master target asks for a resync")
            }
        }
    }

    func resyncPairsThatNeedIt(except skipped: UInt32? = nil) async throws {
        for handle in await session.handles where handle != skipped {
            guard await session.needsResync(handle) else { continue }
            try await resyncOnce(handle, full: false)
        }
    }

    // MARK: resync

    /// Makes every pair's target equal its source, sending only differing chunks (or all, with
    /// `full`); continues an interrupted resync where the MT says it stopped.
    ///
    /// `keepHashes` (follow): remember the source's chunk hashes for change tracking. Follow's
    /// source is live, so when it continues an interrupted resync it also compares the part the
    /// earlier run covered: that may have changed since, and nothing tracked it.
    public func resync(keepHashes: Bool = false) async throws {
        for handle in await session.handles {
            try await resilient("resync", resyncing: handle) {
                try await resyncOnce(handle, full: options.full, keepHashes: keepHashes, recheckCovered: keepHashes)
            }
        }
    }

    /// One resync of a pair: it continues the resync the MT reports as `resyncing` (no
    /// RESYNC_BEGIN, which would reset the MT's progress to 0), or begins one from 0.
    /// `recheckCovered`: on a continuation, also compare what the MT had covered (without marks:
    /// the MT's progress never moves back).
    private func resyncOnce(_ handle: UInt32, full: Bool, keepHashes: Bool = true, recheckCovered: Bool = true) async throws {
        let source = sources[handle]!
        let chunk = UInt64(options.chunkSize)
        let pairID = await session.spec(handle).pairID
        let start: UInt64
        if let reached = try await session.continueResync(handle) {
            // Whole chunks of this run, never past the source (a chunk re-checked costs a hash).
            start = min(reached / chunk * chunk, source.size)
            logger.info("resync continues where the master target stopped",
                        metadata: ["pair.id": "\(pairID)", "resync.from": "\(start)", "full": "\(full)"])
        } else {
            start = 0
            try await session.beginResync(handle)
            logger.info("resync", metadata: ["pair.id": "\(pairID)", "resync.from": "0", "full": "\(full)"])
        }
        // A run that ended without its acks (the dirty marker) may have changed the source below the mark too.
        let changedUnseen = await session.sourceChangedUnseen(handle)
        let recheck = recheckCovered || changedUnseen
        try await resyncRange(handle, from: start, to: source.size, full: full, keepHashes: keepHashes, marks: true)
        if recheck && start > 0 {
            logger.info("resync re-checks what the interrupted run covered", metadata: ["pair.id": "\(pairID)", "resync.through": "\(start)"])
            try await resyncRange(handle, from: 0, to: start, full: full, keepHashes: keepHashes, marks: false)
        }
        try await session.sendResyncDone(handle)
        try await session.waitDurable(handle)
        await session.resyncCompleted(handle)
    }

    /// Compares (or with `full` copies) `from..<to` of the source window by window, sending the
    /// differing chunks; with `marks`, a RESYNC_MARK after each window.
    private func resyncRange(_ handle: UInt32, from: UInt64, to end: UInt64, full: Bool, keepHashes: Bool, marks: Bool) async throws {
        let source = sources[handle]!
        let chunk = UInt64(options.chunkSize)
        var offset = from
        let windowBytes = UInt64(options.windowChunks) * chunk
        func request(_ at: UInt64) async throws -> AsyncThrowingStream<Frame.Hashes, Error>? {
            guard !full, at < end else { return nil }
            let count = Int((min(windowBytes, end - at) + chunk - 1) / chunk)
            return try await session.requestHashes(handle, offset: at, chunkSize: options.chunkSize, count: count)
        }
        let hashLocally = !full || keepHashes
        // Reads (and local hashes) run one window ahead too, so the disk is read while the
        // previous window goes out. Two buffers take turns: a fresh one per window would be
        // zero-filled by the kernel page by page.
        func read(_ at: UInt64, into reused: AlignedBuffer?) -> Task<(AlignedBuffer, Int, [UInt8]), Error>? {
            guard at < end else { return nil }
            let length = Int(min(windowBytes, end - at))
            return Task { [pool, chunkSize = options.chunkSize] in
                let buffer = reused ?? AlignedBuffer(capacity: Int(windowBytes))
                guard hashLocally else {
                    return (buffer, try await pool.runIfActive { try source.read(offset: at, count: length, into: buffer) }, [])
                }
                // In pieces, each hashed while the next is read: direct reads get no readahead.
                let piece = max(chunkSize, (8 << 20) / chunkSize * chunkSize)
                @Sendable func readPiece(_ from: Int) async throws -> Int {
                    guard from < length else { return 0 }
                    return try await pool.runIfActive {
                        try source.read(offset: at + UInt64(from), count: min(piece, length - from), into: buffer, at: from)
                    }
                }
                var hashes: [UInt8] = []
                var from = 0
                var count = try await readPiece(0)
                while count > 0 {
                    let (f, c) = (from, count)
                    let next = Task { try await readPiece(f + c) }
                    hashes += try await pool.runIfActive { Self.hashChunks(buffer, from: f, count: c, chunkSize: chunkSize) }
                    from += count
                    count = try await next.value
                }
                return (buffer, from, hashes)
            }
        }
        var pending = try await request(offset)
        var reading = read(offset, into: nil)
        var spare: AlignedBuffer?
        defer { reading?.cancel() }
        while offset < end {
            let length = min(windowBytes, end - offset)
            let next = try await request(offset + length)  // one window ahead: the MT hashes while we compare
            let at = offset
            let (data, count, local) = try await reading!.value
            reading = read(offset + length, into: spare)
            var differs = [Bool](repeating: true, count: (count + options.chunkSize - 1) / options.chunkSize)
            if let pending {
                let remote = try await pending.answer()
                for i in 0..<min(differs.count, remote.count) {
                    differs[i] = !local[(i * 32)..<(i * 32 + 32)].elementsEqual(remote.digest(i))
                }
            }
            try await sendRuns(handle, data: data, count: count, base: at, differs: differs)
            spare = data
            await session.countHashes(total: differs.count, differing: differs.filter { $0 }.count)
            if marks { try await session.sendResyncMark(handle, through: at + length) }
            if hashLocally { record(handle, offset: at, hashes: local) }
            offset += length
            pending = next
            progress(Progress(phase: "resync", done: offset, total: source.size, stats: await session.stats))
        }
    }

    /// Sends the differing chunks of the first `count` bytes of `data` as writes of up to `maxWrite` bytes.
    private func sendRuns(_ handle: UInt32, data: AlignedBuffer, count: Int, base: UInt64, differs: [Bool]) async throws {
        let chunk = options.chunkSize
        let perWrite = max(1, options.maxWrite / chunk)
        var i = 0
        while i < differs.count {
            guard differs[i] else { i += 1; continue }
            var j = i
            while j < differs.count, differs[j], j - i < perWrite { j += 1 }
            let lo = i * chunk, hi = min(j * chunk, count)
            var buffer = ByteBufferAllocator().buffer(capacity: hi - lo)
            buffer.writeBytes(UnsafeRawBufferPointer(rebasing: data.bytes[lo..<hi]))
            try await session.sendWrite(handle, offset: base + UInt64(lo), data: buffer)
            i = j
        }
    }

    static func hashChunks(_ data: AlignedBuffer, from: Int = 0, count: Int, chunkSize: Int) -> [UInt8] {
        ChunkHashes.of(UnsafeRawBufferPointer(rebasing: data.bytes[from..<(from + count)]), chunkSize: chunkSize)
    }

    private func record(_ handle: UInt32, offset: UInt64, hashes: [UInt8]) {
        let start = Int(offset / UInt64(options.chunkSize)) * 32
        tracked.withLockedValue { tracked in
            var all = tracked[handle] ?? []
            if all.count < start + hashes.count { all += [UInt8](repeating: 0, count: start + hashes.count - all.count) }
            all.replaceSubrange(start..<(start + hashes.count), with: hashes)
            tracked[handle] = all
        }
    }

    // MARK: follow

    public struct FollowOptions: Sendable {
        public var interval: Duration = .seconds(5)
        /// Name of the app-consistent tags; nil = crash-consistent only.
        public var appTag: String?
        /// Every how many cycles the tag is app-consistent.
        public var appEvery = 1
        /// Mount points to `fsfreeze` around an app-consistent tag (all frozen, then the tag, then all thawed).
        public var freeze: [String] = []
        /// Stop after this many cycles (nil: until cancelled).
        public var cycles: Int?
        public init() {}
    }

    /// Resyncs, then every `interval` sends the chunks that changed since the last cycle and tags
    /// every pair at the same point (all pairs of one session belong to one group).
    public func follow(_ follow: FollowOptions) async throws {
        try await resync(keepHashes: true)
        var cycle = 0
        while follow.cycles.map({ cycle < $0 }) ?? true {
            try await Task.sleep(for: follow.interval)
            cycle += 1
            let app = follow.appTag != nil && cycle % max(1, follow.appEvery) == 0
            var frozen: [String] = []
            func thaw() throws {
                // Thaw everything even when one thaw fails; report the first failure.
                var first: Error?
                for mp in frozen.reversed() { do { try freezer(mp, false) } catch { first = first ?? error } }
                frozen = []
                if let first { throw first }
            }
            do {
                if app {
                    for mp in follow.freeze {
                        try freezer(mp, true)
                        frozen.append(mp)
                    }
                }
                for handle in await session.handles {
                    try await resilient("follow") { try await sendChanges(handle) }
                }
                let (id, now) = nextTag()
                for handle in await session.handles {
                    try await resilient("tag") {
                        try await session.sendTag(handle, tagID: id, kind: app ? .app : .crash,
                                                  name: app ? follow.appTag! : "crash-\(id)", sourceTime: now)
                    }
                }
            } catch {
                try? thaw()
                throw error
            }
            try thaw()
            progress(Progress(phase: "follow", done: UInt64(cycle), total: UInt64(follow.cycles ?? 0), stats: await session.stats))
        }
        for handle in await session.handles {
            try await resilient("final ack") { try await session.waitDurable(handle) }
        }
    }

    private func sendChanges(_ handle: UInt32) async throws {
        let source = sources[handle]!
        let chunk = UInt64(options.chunkSize)
        let windowBytes = UInt64(options.windowChunks) * chunk
        var offset: UInt64 = 0
        let data = AlignedBuffer(capacity: Int(windowBytes))
        while offset < source.size {
            let length = min(windowBytes, source.size - offset)
            let at = offset
            let (count, local) = try await pool.runIfActive { [chunkSize = options.chunkSize] in
                let count = try source.read(offset: at, count: Int(length), into: data)
                return (count, Self.hashChunks(data, count: count, chunkSize: chunkSize))
            }
            let start = Int(at / chunk) * 32
            let known = tracked.withLockedValue { $0[handle] ?? [] }
            var differs = [Bool](repeating: true, count: local.count / 32)
            for i in differs.indices where start + i * 32 + 32 <= known.count {
                let mine = local[(i * 32)..<(i * 32 + 32)]
                let before = known[(start + i * 32)..<(start + i * 32 + 32)]
                differs[i] = !mine.elementsEqual(before)
            }
            try await sendRuns(handle, data: data, count: count, base: at, differs: differs)
            record(handle, offset: at, hashes: local)
            offset += length
        }
    }

    /// Tag ids increase and are milliseconds of the wall clock where possible, so tags of one
    /// group sent by several senders can meet.
    func nextTag() -> (id: UInt64, sourceTime: UInt64) {
        var ts = timespec()
        clock_gettime(CLOCK_REALTIME, &ts)
        let ns = UInt64(ts.tv_sec) * 1_000_000_000 + UInt64(ts.tv_nsec)
        let id = lastTagID.withLockedValue { last in
            last = max(last + 1, ns / 1_000_000)
            return last
        }
        return (id, ns)
    }

    // MARK: replay

    /// Replays a trace (docs/sender.md) onto the first pair: each write goes to the source, then
    /// to the MT; each tag is sent as written. With `tagInterval`, a crash tag is also inserted
    /// whenever that much time has passed since the last tag (timed tags for benchmarks).
    public func replay(_ trace: Trace, tagInterval: Duration? = nil) async throws {
        let handle = (await session.handles)[0]
        let source = sources[handle]!
        // The trace says what changes; only a pair that is not in sync needs a resync first, and
        // that resync survives a reconnect like every step after it.
        try await resilient("replay resync") {}
        let clock = ContinuousClock()
        var lastTag = clock.now
        var timedTags = 0
        for (n, op) in trace.ops.enumerated() {
            if let tagInterval, clock.now - lastTag >= tagInterval {
                timedTags += 1
                let (id, now) = nextTag()
                let name = "interval-\(timedTags)"
                try await resilient("replay tag") { try await session.sendTag(handle, tagID: id, kind: .crash, name: name, sourceTime: now) }
                lastTag = clock.now
            }
            switch op {
            case .write(let offset, let length, let seed):
                guard offset + UInt64(length) <= source.size else {
                    throw SenderError.source("trace line \(trace.lines[n]): write past the end of the source (\(source.size) bytes)")
                }
                let data = Trace.data(seed: seed, count: length)
                try await pool.runIfActive { try source.write(data, offset: offset) }
                var at = 0
                while at < data.count {
                    let end = min(at + options.maxWrite, data.count)
                    var buffer = ByteBufferAllocator().buffer(capacity: end - at)
                    buffer.writeBytes(data[at..<end])
                    let piece = buffer, pieceOffset = offset + UInt64(at)
                    do {
                        try await resilient("replay") { try await session.sendWrite(handle, offset: pieceOffset, data: piece) }
                    }
                    at = end
                }
            case .tag(let kind, let name):
                let (id, now) = nextTag()
                try await resilient("replay tag") { try await session.sendTag(handle, tagID: id, kind: kind, name: name, sourceTime: now) }
                lastTag = clock.now
            case .sleep(let millis):
                try await Task.sleep(for: .milliseconds(millis))
            }
            if n % 64 == 0 {
                progress(Progress(phase: "replay", done: UInt64(n + 1), total: UInt64(trace.ops.count), stats: await session.stats))
            }
        }
        try await resilient("final ack") { try await session.waitDurable(handle) }
    }
}
