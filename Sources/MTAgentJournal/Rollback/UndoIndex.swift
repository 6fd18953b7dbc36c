import Foundation
import Glibc
import MTAgentCore

/// Where one UNDO record's data lies and which target bytes it covers.
struct UndoExtent {
    var position: JournalPosition
    var targetOffset: UInt64
    var length: Int

    /// Byte offset of the data inside its segment.
    var dataStart: UInt64 { position.offset + UInt64(JournalFormat.headerSize + UndoRecord.fixedSize) }

    /// The 4 KiB blocks the record covers (its last one may be short, at the target's end).
    var blocks: Range<Int> {
        let first = Int(targetOffset / JournalFormat.blockSize)
        let end = Int((targetOffset + UInt64(length) + JournalFormat.blockSize - 1) / JournalFormat.blockSize)
        return first..<end
    }
}

/// Finds UNDO records without keeping their data in memory; their data is read back one record at a
/// time with `SegmentReader`.
enum UndoIndex {
    /// Every UNDO record after the TAG record at `position`, in journal order, including records inside
    /// aborted ranges (their target writes may have partly happened). Every checksum is verified; a torn
    /// tail (never synced, so never followed by a target write) is ignored, damage anywhere else throws.
    static func extents(after position: JournalPosition, in directory: String) throws -> [UndoExtent] {
        let segments = try JournalFormat.segments(in: directory)
        var found: [UndoExtent] = []
        var foundTag = false
        for segment in segments where segment >= position.segment {
            _ = try SegmentScanner.scan(directory: directory, segment: segment, isLast: segment == segments.last) { record in
                if record.position == position {
                    foundTag = record.type == .tag
                    return
                }
                guard record.position > position, record.type == .undo else { return }
                found.append(try extent(record, directory: directory))
            }
        }
        guard foundTag else { throw JournalError.positionNotFound(position) }
        return found
    }

    /// Every UNDO record of `directory` (created if missing), and where to append after them: the
    /// end of the valid records of the last segment, a torn tail cut off first.
    static func all(in directory: String) throws -> (extents: [UndoExtent], segment: UInt32, end: UInt64) {
        try makeDirectories(directory)
        let segments = try JournalFormat.segments(in: directory)
        var found: [UndoExtent] = []
        var last = SegmentScanner.Result(validEnd: 0, fileSize: 0, tornTail: nil)
        for segment in segments {
            last = try SegmentScanner.scan(directory: directory, segment: segment, isLast: segment == segments.last) { record in
                guard record.type == .undo else { return }
                found.append(try extent(record, directory: directory))
            }
        }
        if let segment = segments.last, last.tornTail != nil {
            let file = try PosixFile(path: JournalFormat.segmentPath(directory, segment), flags: O_RDWR)
            try file.truncate(to: last.validEnd)
            try file.datasync()
        }
        return (found, segments.last ?? 1, last.validEnd)
    }

    private static func extent(_ record: RawRecord, directory: String) throws -> UndoExtent {
        guard let undo = UndoRecord(payload: record.payload) else {
            throw JournalError.corruptRecord(
                path: JournalFormat.segmentPath(directory, record.position.segment), segment: record.position.segment,
                offset: record.position.offset, detail: "checksum is valid but the UNDO payload does not parse")
        }
        return UndoExtent(position: record.position, targetOffset: undo.offset, length: Int(undo.length))
    }
}

/// Reads record data from the segments of one directory, keeping the last segment used open.
final class SegmentReader {
    let directory: String
    private var open: (number: UInt32, file: PosixFile)?

    init(directory: String) { self.directory = directory }

    func read(_ extent: UndoExtent, from start: Int = 0, count: Int? = nil) throws -> [UInt8] {
        if open?.number != extent.position.segment {
            open = (extent.position.segment, try PosixFile(
                path: JournalFormat.segmentPath(directory, extent.position.segment), flags: O_RDONLY))
        }
        return try open!.file.read(count: count ?? extent.length - start, at: extent.dataStart + UInt64(start))
    }
}

/// Removing journal segments no recovery point needs any more.
public enum JournalPruning {
    /// Deletes the segments of a pair journal numbered below `segment` (the segment holding the
    /// oldest kept point's TAG record); never the last segment. Returns how many and their bytes.
    public static func removeSegments(pairJournal: String, before segment: UInt32) throws -> (count: Int, bytes: UInt64) {
        guard FileManager.default.fileExists(atPath: pairJournal) else { return (0, 0) }
        let all = try JournalFormat.segments(in: pairJournal)
        var count = 0
        var bytes: UInt64 = 0
        // Oldest first, so a crash half-way leaves the numbering contiguous.
        for number in all.dropLast() where number < segment {
            let path = JournalFormat.segmentPath(pairJournal, number)
            var st = stat()
            if stat(path, &st) == 0 { bytes += UInt64(st.st_size) }
            guard unlink(path) == 0 else { throw JournalError.io(operation: "unlink", path: path, errno: errno) }
            count += 1
        }
        if count > 0 { try syncDirectory(pairJournal) }
        return (count, bytes)
    }
}
