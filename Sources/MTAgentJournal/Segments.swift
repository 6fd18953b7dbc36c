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

    /// Visits every valid record of `segment`. A bad record is accepted as a torn tail only in the last
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
                if JournalFormat.checksum(header: header[4..<12], payload: payload[...]) != Array(header[12..<44]) {
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
            try visit(record)
            offset += record.size
        }
        return Result(validEnd: size, fileSize: size, tornTail: nil)
    }

    /// Looks for any complete, checksum-valid record starting after `offset`: its presence means the bad
    /// record is damage in the middle, not a tail torn by a crash.
    private static func validRecordOffset(in file: PosixFile, after offset: UInt64, size: UInt64) throws -> UInt64? {
        let start = offset + 1
        guard start < size else { return nil }
        let rest = try file.read(count: Int(size - start), at: start)
        let magic = JournalFormat.magic
        var i = 0
        while i + JournalFormat.headerSize <= rest.count {
            if rest[i] == magic[0], rest[i + 1] == magic[1], rest[i + 2] == magic[2], rest[i + 3] == magic[3],
               JournalFormat.headerProblem(rest[i..<(i + JournalFormat.headerSize)],
                                           bytesAvailable: UInt64(rest.count - i)) == nil {
                let length = Int(rest.readBE(UInt32.self, at: i + 8))
                let payloadStart = i + JournalFormat.headerSize
                let sum = JournalFormat.checksum(header: rest[(i + 4)..<(i + 12)],
                                                 payload: rest[payloadStart..<(payloadStart + length)])
                if sum == Array(rest[(i + 12)..<(i + 44)]) { return start + UInt64(i) }
            }
            i += 1
        }
        return nil
    }
}

/// Appends records to the newest segment, rolling to a new one once it reaches the size limit.
final class SegmentWriter {
    let directory: String
    let limit: UInt64
    private(set) var segment: UInt32
    private(set) var size: UInt64
    private var file: PosixFile
    private var unsynced = false

    /// Opens `segment` for appending at `size` (the end of its valid records), creating it if needed.
    init(directory: String, segment: UInt32, size: UInt64, limit: UInt64) throws {
        self.directory = directory
        self.limit = limit
        self.segment = segment
        self.size = size
        let path = JournalFormat.segmentPath(directory, segment)
        let existed = access(path, F_OK) == 0
        file = try PosixFile(path: path, flags: O_RDWR | O_CREAT)
        if !existed { try syncDirectory(directory) }
    }

    /// Appends one record; it is durable only after `sync()`.
    @discardableResult
    func append(_ type: RecordType, _ payload: [UInt8]) throws -> JournalPosition {
        if size >= limit && size > 0 { try roll() }
        let bytes = JournalFormat.encode(type: type, payload: payload)
        let position = JournalPosition(segment: segment, offset: size)
        try file.write(bytes, at: size)
        size += UInt64(bytes.count)
        unsynced = true
        return position
    }

    /// Starts the writeback of what was appended so far (see `PosixFile.startWriteback`).
    func startWriteback() { file.startWriteback() }

    /// fdatasync, skipped when nothing was appended since the last one.
    func sync() throws {
        guard unsynced else { return }
        try file.datasync()
        unsynced = false
    }

    /// Cuts a torn tail and makes the cut durable before anything new is appended after it.
    func truncate(to length: UInt64) throws {
        try file.truncate(to: length)
        try file.datasync()
        size = length
    }

    /// The old segment is synced before the new one exists, so only the last segment can ever be torn.
    private func roll() throws {
        try sync()
        let next = segment + 1
        let path = JournalFormat.segmentPath(directory, next)
        file = try PosixFile(path: path, flags: O_RDWR | O_CREAT | O_TRUNC)
        try syncDirectory(directory)
        segment = next
        size = 0
    }
}
