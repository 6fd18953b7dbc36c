import MTAgentCore
import Glibc

/// Reads the records of one segment in order, verifying each checksum.
enum SegmentScanner {
    struct Result {
        /// Where the valid records end; less than `fileSize` when a torn tail follows.
        var validEnd: UInt64
        var fileSize: UInt64
        /// What was wrong with the torn tail, if there is one.
        var tornTail: String?
    }

    /// Visits every valid record of `segment` but PAD records. A bad record is accepted as a torn tail only in the last
    /// segment and only when no valid record follows it anywhere; otherwise it is corruption and throws.
    static func scan(
        directory: String, segment: UInt32, isLast: Bool, visit: (RawRecord) throws -> Void
    ) throws -> Result {
        let path = JournalFormat.segmentPath(directory, segment)
        let file = try PosixFile(path: path, flags: O_RDONLY)
        let size = try file.size()
        var offset: UInt64 = 0
        while offset < size {
            let header = try file.read(count: JournalFormat.headerSize, at: offset)
            var problem = JournalFormat.headerProblem(header[...], bytesAvailable: size - offset)
            var payload: [UInt8] = []
            if problem == nil {
                let length = Int(header.readBE(UInt32.self, at: 8))
                payload = try file.read(count: length, at: offset + UInt64(JournalFormat.headerSize))
                if !JournalFormat.checksumMatches(header: header[...], payload: payload[...]) {
                    problem = "checksum mismatch"
                }
            }
            if let problem {
                if !isLast {
                    throw JournalError.corruptRecord(
                        path: path, segment: segment, offset: offset, detail: problem + " (not the last segment)")
                }
                if let later = try validRecordOffset(in: file, after: offset, size: size) {
                    throw JournalError.corruptRecord(
                        path: path, segment: segment, offset: offset,
                        detail: problem + "; a valid record follows at offset \(later)")
                }
                return Result(validEnd: offset, fileSize: size, tornTail: problem)
            }
            let record = RawRecord(
                position: JournalPosition(segment: segment, offset: offset),
                type: RecordType(rawValue: header[4])!, payload: payload)
            if record.type != .pad { try visit(record) }
            offset += record.size
        }
        return Result(validEnd: size, fileSize: size, tornTail: nil)
    }

    /// Looks for any complete, checksum-valid record but PAD starting after `offset`: its presence means
    /// the bad record is damage in the middle, not a tail torn by a crash. A PAD does not count: it is
    /// written in the same block write as the records before it, which a crash may tear around it.
    private static func validRecordOffset(in file: PosixFile, after offset: UInt64, size: UInt64) throws -> UInt64? {
        let start = offset + 1
        guard start < size else { return nil }
        let rest = try file.read(count: Int(size - start), at: start)
        let magic = JournalFormat.magic
        var i = 0
        while i + JournalFormat.headerSize <= rest.count {
            if rest[i] == magic[0], rest[i + 1] == magic[1], rest[i + 2] == magic[2], rest[i + 3] == magic[3],
               rest[i + 4] != RecordType.pad.rawValue,
               JournalFormat.headerProblem(rest[i..<(i + JournalFormat.headerSize)],
                                           bytesAvailable: UInt64(rest.count - i)) == nil {
                let length = Int(rest.readBE(UInt32.self, at: i + 8))
                let payloadStart = i + JournalFormat.headerSize
                if JournalFormat.checksumMatches(header: rest[i..<(i + JournalFormat.headerSize)],
                                                 payload: rest[payloadStart..<(payloadStart + length)]) {
                    return start + UInt64(i)
                }
            }
            i += 1
        }
        return nil
    }
}

/// Appends records to the newest segment, rolling to a new one once it reaches the size limit.
///
/// Records are gathered in an aligned buffer and written with O_DIRECT in whole 4 KiB blocks: the
/// page cache would copy every byte once more, and on a fresh file allocate a page for each 4 KiB
/// (on a VM, memory the host may not have backed yet). `sync()` pads the last block with a PAD
/// record, so a block once synced is never written again. Where O_DIRECT is refused the records go
/// through the page cache, unpadded.
final class SegmentWriter {
    let directory: String
    let limit: UInt64
    private(set) var segment: UInt32
    /// The end of the last appended record, where the next one goes (what is still buffered included).
    var size: UInt64 { base + UInt64(tail) }
    private var file: PosixFile
    /// The segment opened with O_DIRECT too; nil where it is refused.
    private var direct: PosixFile?
    /// `buffer[head..<tail]` holds the bytes of file offsets `[base + head, base + tail)` that are not
    /// written yet. `base` is aligned when `direct` is set; `head` is 0 except after opening at an
    /// unaligned end, when the bytes before it are the file's own.
    private var buffer = AlignedBuffer(capacity: 4 << 20)
    private var base: UInt64 = 0
    private var head = 0
    private var tail = 0
    private var unsynced = false
    private static let block = DirectIO.alignment

    /// False: through the page cache even where O_DIRECT works (for tests of that path).
    private let directIO: Bool

    /// Opens `segment` for appending at `size` (the end of its valid records), creating it if needed.
    init(directory: String, segment: UInt32, size: UInt64, limit: UInt64, directIO: Bool = true) throws {
        self.directory = directory
        self.limit = limit
        self.segment = segment
        self.directIO = directIO
        let path = JournalFormat.segmentPath(directory, segment)
        let existed = access(path, F_OK) == 0
        file = try PosixFile(path: path, flags: O_RDWR | O_CREAT)
        direct = directIO ? try? PosixFile(path: path, flags: O_RDWR | DirectIO.openFlag) : nil
        if !existed { try syncDirectory(directory) }
        position(at: size)
    }

    /// Appends one record whose `payloadCount` bytes `fill` writes in place; it is durable only after
    /// `sync()`. Nothing is appended when `fill` throws.
    @discardableResult
    func append(_ type: RecordType, payloadCount: Int, fill: (UnsafeMutableRawBufferPointer) throws -> Void) throws -> JournalPosition {
        if size >= limit && size > 0 { try roll() }
        return try appendHere(type, payloadCount: payloadCount, fill: fill)
    }

    /// Appends one record; it is durable only after `sync()`.
    @discardableResult
    func append(_ type: RecordType, _ payload: [UInt8]) throws -> JournalPosition {
        try append(type, payloadCount: payload.count) { slot in
            payload.withUnsafeBytes { if !$0.isEmpty { slot.baseAddress!.copyMemory(from: $0.baseAddress!, byteCount: $0.count) } }
        }
    }

    /// Writes out the whole blocks appended so far without waiting for the device (a later `sync()`
    /// has less to do); through the page cache, starts their writeback.
    func startWriteback() {
        if direct != nil {
            try? write(upTo: tail / Self.block * Self.block)
        } else if (try? write(upTo: tail)) != nil {
            file.startWriteback()
        }
    }

    /// Writes what is buffered (padded to a whole block when written with O_DIRECT), then fdatasync;
    /// skipped when nothing was appended since the last one.
    func sync() throws {
        guard unsynced else { return }
        if direct != nil, tail % Self.block != 0 {
            var gap = Self.block - tail % Self.block
            if gap < JournalFormat.headerSize { gap += Self.block }
            try appendHere(.pad, payloadCount: gap - JournalFormat.headerSize) { $0.initializeMemory(as: UInt8.self, repeating: 0) }
        }
        try write(upTo: tail)
        try file.datasync()
        unsynced = false
    }

    /// Cuts a torn tail and makes the cut durable before anything new is appended after it.
    func truncate(to length: UInt64) throws {
        precondition(head == tail, "truncate with records still buffered")
        try file.truncate(to: length)
        try file.datasync()
        position(at: length)
    }

    // MARK: Internals

    /// Sets the buffer to start at the block holding `end` (or at `end` itself without O_DIRECT).
    private func position(at end: UInt64) {
        base = direct != nil ? end / UInt64(Self.block) * UInt64(Self.block) : end
        head = Int(end - base)
        tail = head
    }

    @discardableResult
    private func appendHere(_ type: RecordType, payloadCount: Int, fill: (UnsafeMutableRawBufferPointer) throws -> Void) throws -> JournalPosition {
        let total = JournalFormat.headerSize + payloadCount
        try reserve(total)
        let record = UnsafeMutableRawBufferPointer(rebasing: buffer.bytes[tail..<(tail + total)])
        let payload = UnsafeMutableRawBufferPointer(rebasing: record[JournalFormat.headerSize...])
        try fill(payload)
        JournalFormat.writeHeader(UnsafeMutableRawBufferPointer(rebasing: record[..<JournalFormat.headerSize]),
                                  type: type, payload: UnsafeRawBufferPointer(payload))
        let position = JournalPosition(segment: segment, offset: size)
        tail += total
        unsynced = true
        return position
    }

    /// Room for `count` more bytes: whole blocks are written out first, then the buffer grows if it must.
    private func reserve(_ count: Int) throws {
        guard tail + count > buffer.count else { return }
        try write(upTo: direct != nil ? tail / Self.block * Self.block : tail)
        guard tail + count > buffer.count else { return }
        let bigger = AlignedBuffer(capacity: tail + count)
        bigger.bytes.baseAddress!.copyMemory(from: buffer.bytes.baseAddress!, byteCount: tail)
        buffer = bigger
    }

    /// Writes `buffer[head..<end]` (`end` a whole block with O_DIRECT) and moves the rest to the front.
    private func write(upTo end: Int) throws {
        guard end > head else { return }
        var from = head
        if let direct {
            if from % Self.block != 0 {
                // The first write after opening at an unaligned end: the rest of that block through
                // the page cache, as every append went before O_DIRECT.
                let blockEnd = min(end, (from / Self.block + 1) * Self.block)
                try file.write(UnsafeRawBufferPointer(rebasing: buffer.bytes[from..<blockEnd]), at: base + UInt64(from))
                from = blockEnd
            }
            if end > from {
                do {
                    try direct.write(UnsafeRawBufferPointer(rebasing: buffer.bytes[from..<end]), at: base + UInt64(from))
                } catch JournalError.io(_, _, EINVAL) {
                    // The filesystem wants a larger alignment: the page cache from now on.
                    self.direct = nil
                    try file.write(UnsafeRawBufferPointer(rebasing: buffer.bytes[from..<end]), at: base + UInt64(from))
                }
            }
        } else {
            try file.write(UnsafeRawBufferPointer(rebasing: buffer.bytes[from..<end]), at: base + UInt64(from))
        }
        let rest = tail - end
        if rest > 0 { buffer.bytes.baseAddress!.copyMemory(from: buffer.bytes.baseAddress! + end, byteCount: rest) }
        base += UInt64(end)
        head = 0
        tail = rest
    }

    /// The old segment is synced before the new one exists, so only the last segment can ever be torn.
    private func roll() throws {
        try sync()
        let next = segment + 1
        let path = JournalFormat.segmentPath(directory, next)
        file = try PosixFile(path: path, flags: O_RDWR | O_CREAT | O_TRUNC)
        direct = directIO ? try? PosixFile(path: path, flags: O_RDWR | DirectIO.openFlag) : nil
        try syncDirectory(directory)
        segment = next
        position(at: 0)
    }
}
