import MTAgentCore
import Crypto
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
    private let journal: SegmentWriter
    /// The newest durable COMMIT.
    private var durable: CommitRecord
    /// `durable` with every queued item applied: what `accept` validates against.
    private var accepted: CommitRecord
    private var queue: [Item] = []
    /// 4 KiB blocks whose old content is already in the journal since the last tag. Losing it (a restart)
    /// only makes later records duplicate older ones; restore applies newest first, so the oldest wins.
    private var copied: Set<UInt64> = []
    /// Set when an I/O error left the applier between two orderings: only close and reopen can repair that.
    private var failure: Error?

    private init(pair: PairInfo, targetSize: UInt64, target: PosixFile, journal: SegmentWriter,
                 commit: CommitRecord, catalog: Catalog, logger: Logger) {
        self.pair = pair
        self.targetSize = targetSize
        self.target = target
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
    public static func open(pair: PairInfo, targetPath: String, journalRoot: String, catalog: Catalog,
                            logger: Logger, segmentLimit: UInt64 = 256 << 20) throws -> PairApplier {
        var logger = logger
        logger[metadataKey: "pair.id"] = "\(pair.id)"
        guard try catalog.pair(id: pair.id) != nil else { throw JournalError.unregisteredPair(pair.id) }
        let target = try PosixFile(path: targetPath, flags: O_RDWR)
        let targetSize = try target.size()

        let directory = journalRoot + "/" + pair.id
        try makeDirectories(directory)
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

        let applier = PairApplier(pair: pair, targetSize: targetSize, target: target, journal: journal,
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
        if let failure { return .refused("the pair failed (\(failure)); close and reopen it") }
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
            return .refused("the pair needs a resync (\(accepted.reason)): only resync-begin is accepted")
        }
        if seq != accepted.durableSeq + 1 {
            return requireResync("sequence gap: expected \(accepted.durableSeq + 1), got \(seq)")
        }
        switch op {
        case .write(_, let offset, let data):
            let (end, overflow) = offset.addingReportingOverflow(UInt64(data.count))
            if overflow || end > targetSize {
                return requireResync(
                    "write past the end of the target: \(offset)+\(data.count) > \(targetSize)")
            }
        case .resyncMark(_, let through):
            guard accepted.state == .resyncing else { return requireResync("resync-mark outside a resync") }
            guard through <= targetSize else {
                return requireResync("resync-mark past the end of the target: \(through) > \(targetSize)")
            }
            accepted.resyncOffset = through
        case .resyncDone:
            guard accepted.state == .resyncing else { return requireResync("resync-done outside a resync") }
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
        _ = requireResync(reason)
        return try commit()
    }

    /// Up to `count` bytes of the target from `offset`, fewer at its end, none past it: what
    /// `commit()` made durable (the server hashes these for a differential resync).
    public func readTarget(offset: UInt64, count: Int) throws -> [UInt8] {
        guard offset < targetSize else { return [] }
        return try target.read(count: Int(min(UInt64(count), targetSize - offset)), at: offset)
    }

    /// Drops what is queued but not committed (the sender resends everything after `durableSeq`) and makes
    /// every later call fail. The target and segment descriptors are closed when the applier is deallocated.
    public func close() {
        queue.removeAll()
        failure = failure ?? JournalError.closed(pair: pair.id)
    }

    // MARK: Internals

    private func requireResync(_ reason: String) -> Acceptance {
        logger.warning("pair needs a resync", metadata: ["pair.reason": "\(reason)"])
        accepted.state = .resyncRequired
        accepted.reason = reason
        queue.append(.requireResync(reason))
        return .refused(reason)
    }

    /// One batch: ops in seq order, ending at its only tag if it has one.
    private func apply(_ batch: [Item]) throws -> DurableTag? {
        var next = durable
        var writes: [(seq: UInt64, offset: UInt64, data: [UInt8])] = []
        var tag: (record: TagRecord, position: JournalPosition)?
        // Only undo what a point may need: before the first durable resyncDone no point can exist, and a
        // resyncDone inside this batch precedes every tag that could use the batch's writes.
        let keepUndo = durable.hasBaseline

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
                    if keepUndo { try saveUndo(seq: seq, offset: offset, length: UInt64(data.count)) }
                    writes.append((seq, offset, data))
                case .tag(let seq, let tagID, let kind, let name, let sourceTime):
                    let record = TagRecord(seq: seq, tagID: tagID, kind: kind, sourceTime: sourceTime,
                                           inSync: next.state == .inSync, name: name)
                    tag = (record, try journal.append(.tag, record.encode()))
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
        try journal.sync()

        // (2) the target.
        for write in writes { try target.write(write.data, at: write.offset) }
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

    /// Appends the old content of every 4 KiB block the write covers (clamped to the target's end) that has
    /// not been copied since the last tag, one UNDO record per run of such blocks.
    private func saveUndo(seq: UInt64, offset: UInt64, length: UInt64) throws {
        guard length > 0 else { return }
        let block = JournalFormat.blockSize
        let first = offset / block
        let last = (offset + length - 1) / block
        var runStart: UInt64?
        func flush(upTo end: UInt64) throws {
            guard let start = runStart else { return }
            runStart = nil
            var position = start * block
            let stop = min(end * block, targetSize)
            while position < stop {
                let count = Int(min(UInt64(JournalFormat.maxUndoData), stop - position))
                let old = try target.read(count: count, at: position)
                let record = UndoRecord(seq: seq, offset: position, length: UInt32(old.count))
                try journal.append(.undo, record.encode(data: old[...]))
                position += UInt64(count)
            }
        }
        for index in first...last {
            if copied.insert(index).inserted {
                if runStart == nil { runStart = index }
            } else {
                try flush(upTo: index)
            }
        }
        try flush(upTo: last + 1)
    }

    private static func catalogTag(_ record: TagRecord, _ position: JournalPosition) -> Catalog.Tag {
        Catalog.Tag(seq: record.seq, tagID: record.tagID, kind: record.kind, name: record.name,
                    sourceTime: record.sourceTime, position: position)
    }
}
