import MTAgentCore
import Crypto
import Dispatch
import Glibc
import Logging

/// Makes one pair's writes durable on its target, keeping the undo journal that lets every recovery point
/// be restored. The three orderings of DESIGN §7 are kept per batch in `commit()`: undo records are
/// durable before the target is written, the target is durable before the COMMIT record that lets the
/// server ack, and a tag reaches the catalog only after its COMMIT is durable.
///
/// Threading contract: one caller at a time. The server serialises all calls for a pair (accept, commit,
/// markResyncRequired, readChunkHashes, close), possibly from different threads, so the class holds no lock
/// and is `@unchecked Sendable` only to be handed between those threads.
public final class PairApplier: @unchecked Sendable {
    public let pair: PairInfo
    public let targetSize: UInt64
    /// Everything with a sequence number ≤ this is durable.
    public private(set) var durableSeq: UInt64
    /// The state as of the last accepted op; it becomes durable at the next `commit()`.
    public var state: PairState { accepted.state }
    public var reason: String? { accepted.reason.isEmpty ? nil : accepted.reason }
    public var resyncOffset: UInt64 { accepted.resyncOffset }
    /// The highest sequence number accepted (queued or durable).
    public var acceptedSeq: UInt64 { accepted.durableSeq }
    /// False until the first resyncDone is durable: no undo is kept, because no point exists before it.
    public var hasBaseline: Bool { durable.hasBaseline }

    private enum Item {
        case op(PairOp)
        case requireResync(String)
    }

    private let logger: Logger
    private let catalog: Catalog
    private let target: PosixFile
    /// The target opened with O_DIRECT too, for large aligned reads and writes; nil where it is
    /// refused (tmpfs). Mixing it with `target` is coherent: the kernel writes back and drops
    /// cached pages of a range before direct I/O to it.
    private let direct: PosixFile?
    /// Where direct reads land (two pieces) and aligned writes are gathered, kept while the pair is open.
    private lazy var ioBuffer = AlignedBuffer(capacity: 2 * Self.readPiece)
    private static let readPiece = 8 << 20
    private static let directWriteMinimum = 256 << 10
    /// Runs `readTarget`'s read-ahead. A queue of its own gets a thread of its own: on the global
    /// queue the read would wait behind Swift concurrency's threads, one of which may be the caller
    /// waiting for it.
    private let reader = DispatchQueue(label: "mt-agent.target-read-ahead")
    private let journal: SegmentWriter
    /// The newest durable COMMIT.
    private var durable: CommitRecord
    /// `durable` with every queued item applied: what `accept` validates against.
    private var accepted: CommitRecord
    private var queue: [Item] = []
    /// 4 KiB blocks whose old content is already in the journal since the last tag, as ranges (see
    /// `UndoSet`). Losing it (a restart, or the bound) only makes later records duplicate older ones;
    /// restore applies newest first, so the oldest wins.
    private var copied = UndoSet(maxRanges: UndoSet.defaultMaxRanges)
    /// The most ranges the undo set keeps (config `undo_set_max_ranges`; 16 bytes each) before it is
    /// emptied. Setting it empties the set.
    public var undoSetMaxRanges: Int {
        get { copied.maxRanges }
        set { copied = UndoSet(maxRanges: newValue) }
    }
    /// Times the undo set outgrew `undoSetMaxRanges` and was emptied since the pair was opened.
    public private(set) var undoSetDrops = 0
    /// Set when an I/O error left the applier between two orderings: only close and reopen can repair that.
    private var failure: Error?

    private init(pair: PairInfo, targetSize: UInt64, target: PosixFile, direct: PosixFile?, journal: SegmentWriter,
                 commit: CommitRecord, catalog: Catalog, logger: Logger) {
        self.pair = pair
        self.targetSize = targetSize
        self.target = target
        self.direct = direct
        self.journal = journal
        self.durable = commit
        self.accepted = commit
        self.durableSeq = commit.durableSeq
        self.catalog = catalog
        self.logger = logger
    }

    /// Opens the target and the pair's journal under `<journalRoot>/<pair-id>/`, repairing what a crash left:
    /// a torn tail is cut, records after the last COMMIT are closed by an ABORT record, the newest COMMIT
    /// gives the durable state, and the catalog is brought up to date with it and with every durable tag.
    /// The target is opened without following a link and must be `admitted`, the node the target rules
    /// judged (nil only where no rules ran: tests on scratch files).
    public static func open(pair: PairInfo, targetPath: String, admitted: AdmittedTarget.Node?, journalRoot: String,
                            catalog: Catalog, logger: Logger, segmentLimit: UInt64 = 256 << 20) throws -> PairApplier {
        let id = try Identifier(validating: pair.id, kind: .pair)  // before anything is opened or made
        var logger = logger
        logger[metadataKey: "pair.id"] = "\(pair.id)"
        guard try catalog.pair(id: pair.id) != nil else { throw JournalError.unregisteredPair(pair.id) }
        let target = try PosixFile.openTarget(targetPath, flags: O_RDWR, admitted: admitted)
        let node = try target.node()
        // The same node again, or none (O_DIRECT refused, e.g. tmpfs).
        let direct: PosixFile?
        do {
            direct = try PosixFile.openTarget(targetPath, flags: O_RDWR | DirectIO.openFlag, admitted: node)
        } catch let error as TargetOpenError {
            throw error
        } catch {
            direct = nil
        }
        let targetSize = try target.size()

        // The id is a name: a directory of its own under the journal root, reached without following a link.
        let directory = try RetentionDirectory.open(journalRoot, create: true).make(id).path
        let segments = try JournalFormat.segments(in: directory)

        var lastCommit = CommitRecord(durableSeq: 0, state: .new, resyncOffset: 0, hasBaseline: false, reason: "")
        var firstUncommitted: JournalPosition?
        var pendingTags: [(TagRecord, JournalPosition)] = []
        var durableTags: [(TagRecord, JournalPosition)] = []
        var lastScan = SegmentScanner.Result(validEnd: 0, fileSize: 0, tornTail: nil)
        for segment in segments {
            lastScan = try SegmentScanner.scan(directory: directory, segment: segment,
                                               isLast: segment == segments.last) { record in
                let path = JournalFormat.segmentPath(directory, segment)
                func corrupt(_ what: String) -> JournalError {
                    .corruptRecord(path: path, segment: segment, offset: record.position.offset,
                                   detail: "checksum is valid but the \(what) payload does not parse")
                }
                switch record.type {
                case .undo:
                    guard UndoRecord(payload: record.payload) != nil else { throw corrupt("UNDO") }
                    if firstUncommitted == nil { firstUncommitted = record.position }
                case .tag:
                    guard let tag = TagRecord(payload: record.payload) else { throw corrupt("TAG") }
                    if firstUncommitted == nil { firstUncommitted = record.position }
                    pendingTags.append((tag, record.position))
                case .commit:
                    guard let commit = CommitRecord(payload: record.payload) else { throw corrupt("COMMIT") }
                    lastCommit = commit
                    durableTags += pendingTags
                    pendingTags = []
                    firstUncommitted = nil
                case .abort:
                    guard AbortRecord(payload: record.payload) != nil else { throw corrupt("ABORT") }
                    pendingTags = []
                    firstUncommitted = nil
                case .pad:
                    break  // the scanner never visits one
                }
            }
        }

        let journal = try SegmentWriter(directory: directory, segment: segments.last ?? 1,
                                        size: lastScan.validEnd, limit: segmentLimit)
        if let torn = lastScan.tornTail {
            logger.warning("cutting a torn journal tail left by a crash", metadata: [
                "journal.segment": "\(journal.segment)", "journal.offset": "\(lastScan.validEnd)",
                "journal.cutBytes": "\(lastScan.fileSize - lastScan.validEnd)", "journal.problem": "\(torn)",
            ])
            try journal.truncate(to: lastScan.validEnd)
        }
        if let start = firstUncommitted {
            // Their target writes may have partly happened: the UNDO records stay valid for restore, the
            // TAG records never count, and the sender resends everything after lastCommit.durableSeq.
            logger.warning("closing an uncommitted batch left by a crash", metadata: [
                "journal.segment": "\(start.segment)", "journal.offset": "\(start.offset)",
                "pair.durableSeq": "\(lastCommit.durableSeq)",
            ])
            try journal.append(.abort, AbortRecord(start: start, durableSeq: lastCommit.durableSeq).encode())
            try journal.sync()
        }

        let applier = PairApplier(pair: pair, targetSize: targetSize, target: target, direct: direct, journal: journal,
                                  commit: lastCommit, catalog: catalog, logger: logger)
        _ = try catalog.record(
            .init(pairID: pair.id, commit: lastCommit),
            tags: durableTags.filter { $0.0.inSync }.map { Self.catalogTag($0.0, $0.1) })
        logger.info("pair opened", metadata: [
            "pair.durableSeq": "\(lastCommit.durableSeq)", "pair.state": "\(lastCommit.state.rawValue)",
            "journal.segment": "\(journal.segment)", "journal.size": "\(journal.size)",
        ])
        return applier
    }

    /// Validates `op` against the sequence and range rules and queues it. Never blocks on I/O.
    public func accept(_ op: PairOp) -> Acceptance {
        if let failure { return .refused(.failed(reason: "\(failure)")) }
        let seq = op.seq
        if seq <= accepted.durableSeq { return .duplicate }
        if case .resyncBegin = op {
            accepted.durableSeq = seq
            accepted.state = .resyncing
            accepted.resyncOffset = 0
            accepted.reason = ""
            queue.append(.op(op))
            return .queued
        }
        if accepted.state == .resyncRequired {
            return .refused(.resyncRequired(reason: accepted.reason))
        }
        if seq != accepted.durableSeq + 1 {
            return requireResync(.sequenceGap(expected: accepted.durableSeq + 1, got: seq))
        }
        switch op {
        case .write(_, let offset, let data):
            let (end, overflow) = offset.addingReportingOverflow(UInt64(data.count))
            if overflow || end > targetSize {
                return requireResync(.writeOutOfRange(offset: offset, length: UInt64(data.count), targetSize: targetSize))
            }
        case .resyncMark(_, let through):
            guard accepted.state == .resyncing else { return requireResync(.outsideResync(op: "resync-mark")) }
            guard through <= targetSize else {
                return requireResync(.markOutOfRange(through: through, targetSize: targetSize))
            }
            accepted.resyncOffset = through
        case .resyncDone:
            guard accepted.state == .resyncing else { return requireResync(.outsideResync(op: "resync-done")) }
            accepted.state = .inSync
            accepted.resyncOffset = targetSize
            accepted.hasBaseline = true
        case .tag, .resyncBegin:
            break
        }
        accepted.durableSeq = seq
        queue.append(.op(op))
        return .queued
    }

    /// Makes everything queued durable, one batch per tag, and reports the tags that became durable.
    /// Blocking: run it on a thread pool.
    public func commit() throws -> CommitOutcome {
        if let failure { throw failure }
        var tags: [DurableTag] = []
        do {
            while !queue.isEmpty {
                let end = queue.firstIndex {
                    if case .op(.tag) = $0 { return true } else { return false }
                } ?? queue.count - 1
                let batch = Array(queue[...end])
                if let tag = try apply(batch) { tags.append(tag) }
                queue.removeFirst(end + 1)
            }
        } catch {
            failure = error
            logger.error("commit failed; the pair must be reopened", metadata: ["error": "\(error)"])
            throw error
        }
        return CommitOutcome(durableSeq: durableSeq, state: durable.state, tags: tags)
    }

    /// Puts the pair into resync-required (e.g. the server saw a bad checksum) and commits it with
    /// everything queued before it.
    @discardableResult
    public func markResyncRequired(reason: String) throws -> CommitOutcome {
        if let failure { throw failure }
        enterResyncRequired(reason)
        return try commit()
    }

    /// Calls `body` with up to `count` bytes of the target from `offset` (fewer at its end, none past
    /// it) in consecutive pieces, each a whole number of `granule`s but the last: what `commit()` made
    /// durable (the server hashes these for a differential resync). A piece is valid only during `body`.
    public func readTarget(offset: UInt64, count: Int, granule: Int, _ body: (UnsafeRawBufferPointer) throws -> Void) throws {
        guard offset < targetSize else { return }
        let piece = max(granule, Self.readPiece / granule * granule)
        if ioBuffer.count < 2 * piece { ioBuffer = AlignedBuffer(capacity: 2 * piece) }
        let buffer = ioBuffer
        // Direct reads get no readahead from the kernel: the next piece is read on another thread
        // (into the other half of the buffer) while `body` works on this one.
        func start(half: Int, at: UInt64, count: Int) -> BackgroundRead {
            BackgroundRead(on: reader) { try self.readTarget(into: buffer, from: half * piece, count: count, at: at) }
        }
        var at = offset
        var left = Int(min(UInt64(count), targetSize - offset))
        var half = 0
        var reading: BackgroundRead? = start(half: half, at: at, count: min(piece, left))
        defer { _ = try? reading?.wait() }  // never leave a read into the buffer running
        while let read = reading {
            reading = nil
            let n = try read.wait()
            if n == 0 { break }
            at += UInt64(n)
            left -= n
            if left > 0 { reading = start(half: 1 - half, at: at, count: min(piece, left)) }
            try body(UnsafeRawBufferPointer(rebasing: buffer.bytes[(half * piece)..<(half * piece + n)]))
            half = 1 - half
        }
    }

    /// Drops what is queued but not committed (the sender resends everything after `durableSeq`) and makes
    /// every later call fail. The target and segment descriptors are closed when the applier is deallocated.
    public func close() {
        queue.removeAll()
        failure = failure ?? JournalError.closed(pair: pair.id)
    }

    // MARK: Internals

    private func requireResync(_ refusal: PairRefusal) -> Acceptance {
        enterResyncRequired(refusal.description)
        return .refused(refusal)
    }

    private func enterResyncRequired(_ reason: String) {
        logger.warning("pair needs a resync", metadata: ["pair.reason": "\(reason)"])
        accepted.state = .resyncRequired
        accepted.reason = reason
        queue.append(.requireResync(reason))
    }

    /// One batch: ops in seq order, ending at its only tag if it has one.
    private func apply(_ batch: [Item]) throws -> DurableTag? {
        var next = durable
        var writes: [(seq: UInt64, offset: UInt64, data: [UInt8])] = []
        var tag: (record: TagRecord, position: JournalPosition)?
        // Only undo what a point may need: before the first durable resyncDone no point can exist, and a
        // resyncDone inside this batch precedes every tag that could use the batch's writes.
        let keepUndo = durable.hasBaseline
        if keepUndo { prefetchOldContent(batch) }
        var undo: [UndoPiece] = []
        var tagRecord: TagRecord?

        // (1) undo records, then the TAG record, durable before the target is touched.
        for item in batch {
            switch item {
            case .requireResync(let reason):
                next.state = .resyncRequired
                next.reason = reason
            case .op(let op):
                next.durableSeq = op.seq
                switch op {
                case .write(let seq, let offset, let data):
                    if keepUndo { planUndo(seq: seq, offset: offset, length: UInt64(data.count), into: &undo) }
                    writes.append((seq, offset, data))
                case .tag(let seq, let tagID, let kind, let name, let sourceTime):
                    let record = TagRecord(seq: seq, tagID: tagID, kind: kind, sourceTime: sourceTime,
                                           inSync: next.state == .inSync, name: name)
                    tagRecord = record
                case .resyncBegin:
                    next.state = .resyncing
                    next.resyncOffset = 0
                    next.reason = ""
                case .resyncMark(_, let through):
                    next.resyncOffset = through
                case .resyncDone:
                    next.state = .inSync
                    next.resyncOffset = targetSize
                    next.hasBaseline = true
                }
            }
        }
        try saveUndo(undo)
        if let tagRecord { tag = (tagRecord, try journal.append(.tag, tagRecord.encode())) }  // a batch's last op
        try journal.sync()

        // (2) the target (fdatasync on either descriptor flushes the device's cache).
        try writeTarget(writes)
        if !writes.isEmpty { try target.datasync() }

        // (3) the COMMIT record: from here the server may ack next.durableSeq.
        try journal.append(.commit, next.encode())
        try journal.sync()
        let changed = next.state != durable.state || next.reason != durable.reason
            || next.hasBaseline != durable.hasBaseline || next.resyncOffset != durable.resyncOffset
        durable = next
        durableSeq = next.durableSeq
        if tag != nil { copied.removeAll() }

        // (4) the catalog, derived from the journal (open() repairs it if we crash before this).
        guard let tag else {
            if changed { _ = try catalog.record(.init(pairID: pair.id, commit: next), tags: []) }
            return nil
        }
        let eligible = tag.record.inSync
        let complete = try catalog.record(.init(pairID: pair.id, commit: next),
                                          tags: eligible ? [Self.catalogTag(tag.record, tag.position)] : [])
        return DurableTag(seq: tag.record.seq, tagID: tag.record.tagID, kind: tag.record.kind,
                          name: tag.record.name, sourceTime: tag.record.sourceTime, position: tag.position,
                          eligible: eligible, recoveryPointComplete: complete.contains(tag.record.tagID))
    }

    /// The batch's writes, in order. Runs of contiguous aligned writes are gathered into `ioBuffer`;
    /// large ones are written through O_DIRECT: no page-cache copy, and requests larger than one
    /// WRITE. Small runs go through the page cache, whose writeback at the fdatasync sends them
    /// together, where direct writes would each wait for the device in turn.
    private func writeTarget(_ writes: [(seq: UInt64, offset: UInt64, data: [UInt8])]) throws {
        guard direct != nil else {
            for write in writes { try target.write(write.data, at: write.offset) }
            return
        }
        let buffer = ioBuffer
        var start: UInt64 = 0
        var filled = 0
        func flush() throws {
            guard filled > 0 else { return }
            let bytes = UnsafeRawBufferPointer(rebasing: buffer.bytes[..<filled])
            filled = 0
            if bytes.count >= Self.directWriteMinimum, let direct {
                do { return try direct.write(bytes, at: start) } catch JournalError.io(_, _, EINVAL) {
                    // The target's block size is above the alignment: through the page cache after all.
                }
            }
            try target.write(bytes, at: start)
        }
        for write in writes {
            let count = write.data.count
            guard count > 0, count <= buffer.count, DirectIO.isAligned(write.offset), DirectIO.isAligned(count) else {
                try flush()
                try target.write(write.data, at: write.offset)
                continue
            }
            if filled > 0, start + UInt64(filled) != write.offset || filled + count > buffer.count { try flush() }
            if filled == 0 { start = write.offset }
            write.data.withUnsafeBytes { (buffer.bytes.baseAddress! + filled).copyMemory(from: $0.baseAddress!, byteCount: count) }
            filled += count
        }
        try flush()
    }

    /// Up to `count` bytes of the target at `offset` into `buffer` from byte `from` (an aligned
    /// position with room for `count` rounded up to the alignment); fewer only at the target's end.
    /// Through O_DIRECT when `offset` is aligned. Touches only the two descriptors, which pread
    /// shares safely: it may run on another thread while the caller works on the rest of `buffer`.
    private func readTarget(into buffer: AlignedBuffer, from: Int, count: Int, at offset: UInt64) throws -> Int {
        if let direct, DirectIO.isAligned(offset) {
            // Rounded up: a direct read takes whole blocks and stops short at the end of the target.
            let length = DirectIO.roundUp(count)
            do {
                return min(count, try direct.read(into: UnsafeMutableRawBufferPointer(rebasing: buffer.bytes[from..<(from + length)]), at: offset))
            } catch JournalError.io(_, _, EINVAL) {
                // A short read left an unaligned offset (a target whose size is not a multiple of
                // the alignment), or the block size is above it: the page cache reads any offset.
            }
        }
        return try target.read(into: UnsafeMutableRawBufferPointer(rebasing: buffer.bytes[from..<(from + count)]), at: offset)
    }

    /// Starts reading what the batch's small writes will overwrite, so that `appendUndo`'s reads of it
    /// go to the device together instead of one at a time (thousands of 4 KiB reads in a differential
    /// resync; the target's hashes were read past the page cache). Large ones are read with O_DIRECT.
    private func prefetchOldContent(_ batch: [Item]) {
        for case .op(.write(_, let offset, let data)) in batch where offset < targetSize {
            if direct != nil, data.count >= Self.directReadMinimum { continue }
            _ = posix_fadvise(target.fd, off_t(offset), off_t(min(UInt64(data.count), targetSize - offset)), POSIX_FADV_WILLNEED)
        }
    }

    /// Runs of old content at least this long are read with O_DIRECT, shorter ones through the page cache.
    private static let directReadMinimum = 64 << 10

    /// One UNDO record to write: the target's `count` bytes at `offset`, copied for the write `seq`.
    private struct UndoPiece {
        var seq: UInt64
        var offset: UInt64
        var count: Int
    }

    /// The UNDO records a write needs: the old content of every 4 KiB block it covers (clamped to the
    /// target's end) not copied since the last tag, one record per run of such blocks (split at 1 MiB).
    /// `accept` checked that the write ends inside the target, so nothing here overflows.
    private func planUndo(seq: UInt64, offset: UInt64, length: UInt64, into pieces: inout [UndoPiece]) {
        guard length > 0 else { return }
        let block = JournalFormat.blockSize
        let first = offset / block
        let last = (offset + length - 1) / block
        let (runs, dropped) = copied.insert(first..<(last + 1))
        if dropped {
            undoSetDrops += 1
            logger.warning("the undo set outgrew its bound and was emptied: blocks written again before the next tag are saved again",
                           metadata: ["undoSet.maxRanges": "\(copied.maxRanges)", "undoSet.drops": "\(undoSetDrops)"])
        }
        for run in runs {
            var position = run.lowerBound * block
            let stop = min(run.upperBound * block, targetSize)
            while position < stop {
                let count = Int(min(UInt64(JournalFormat.maxUndoData), stop - position))
                pieces.append(UndoPiece(seq: seq, offset: position, count: count))
                position += UInt64(count)
            }
        }
    }

    /// Appends the UNDO records, in order. Large aligned pieces are read with O_DIRECT into the two
    /// halves of `ioBuffer` in turn, the next one on the read-ahead thread while this one is copied
    /// into the journal; the others are read through the page cache straight into their record.
    private func saveUndo(_ pieces: [UndoPiece]) throws {
        guard !pieces.isEmpty else { return }
        let buffer = ioBuffer
        let half = buffer.count / 2
        func isDirect(_ piece: UndoPiece) -> Bool {
            direct != nil && piece.count >= Self.directReadMinimum && piece.count <= half
                && DirectIO.isAligned(piece.offset) && DirectIO.isAligned(piece.count)
        }
        func start(_ index: Int, into slot: Int) -> BackgroundRead? {
            guard index < pieces.count, isDirect(pieces[index]) else { return nil }
            let piece = pieces[index]
            return BackgroundRead(on: reader) {
                try self.direct!.read(into: UnsafeMutableRawBufferPointer(rebasing: buffer.bytes[(slot * half)..<(slot * half + piece.count)]),
                                      at: piece.offset)
            }
        }
        var slot = 0
        var reading = start(0, into: slot)
        defer { _ = try? reading?.wait() }  // never leave a read into the buffer running
        for (index, piece) in pieces.enumerated() {
            guard let read = reading else {
                try appendUndo(piece, from: nil)
                reading = start(index + 1, into: slot)
                continue
            }
            reading = nil
            let readSlot = slot
            slot = 1 - slot
            let n: Int
            do { n = try read.wait() } catch JournalError.io(_, _, EINVAL) { n = -1 }  // block size above the alignment
            // The next direct read starts now, into the other half, while this one is journaled.
            reading = start(index + 1, into: slot)
            try appendUndo(piece, from: n == piece.count ? UnsafeRawBufferPointer(rebasing: buffer.bytes[(readSlot * half)..<(readSlot * half + n)]) : nil)
        }
    }

    /// One UNDO record: its data copied from `data` when given (read with O_DIRECT), else read
    /// through the page cache straight into the journal's buffer.
    private func appendUndo(_ piece: UndoPiece, from data: UnsafeRawBufferPointer?) throws {
        let fixed = UndoRecord.fixedSize
        try journal.append(.undo, payloadCount: fixed + piece.count) { payload in
            UndoRecord(seq: piece.seq, offset: piece.offset, length: UInt32(piece.count)).encodeFixed(into: payload)
            let slot = UnsafeMutableRawBufferPointer(rebasing: payload[fixed...])
            if let data {
                slot.copyMemory(from: data)
                return
            }
            let read = try target.read(into: slot, at: piece.offset)
            guard read == piece.count else {
                throw JournalError.io(operation: "pread (short: \(read) of \(piece.count) bytes)", path: target.path, errno: EIO)
            }
        }
    }

    private static func catalogTag(_ record: TagRecord, _ position: JournalPosition) -> Catalog.Tag {
        Catalog.Tag(seq: record.seq, tagID: record.tagID, kind: record.kind, name: record.name,
                    sourceTime: record.sourceTime, position: position)
    }
}

/// A blocking read started on `queue`; `wait()` returns its result, once.
private final class BackgroundRead: @unchecked Sendable {
    private let done = DispatchSemaphore(value: 0)
    private var result: Result<Int, Error> = .success(0)

    init(on queue: DispatchQueue, _ read: @escaping @Sendable () throws -> Int) {
        queue.async {
            self.result = Result(catching: read)
            self.done.signal()
        }
    }

    func wait() throws -> Int {
        done.wait()
        return try result.get()
    }
}
