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

    /// Where the covered bytes end. Every extent is made by `UndoIndex.checked`, which refuses one
    /// whose end overflows or lies beyond any file offset, so this and `blocks` never trap.
    var end: UInt64 { targetOffset + UInt64(length) }

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
    /// An extent from a record's fields, after checking they describe bytes a file can have: the
    /// record's checksum only proves it was written so, not that it fits (a bug or a forged record).
    static func checked(position: JournalPosition, offset: UInt64, length: UInt32, directory: String) throws -> UndoExtent {
        let (end, overflow) = offset.addingReportingOverflow(UInt64(length))
        guard !overflow, end <= UInt64(Int64.max) else {
            throw JournalError.corruptRecord(
                path: JournalFormat.segmentPath(directory, position.segment), segment: position.segment, offset: position.offset,
                detail: "the UNDO record covers \(length) bytes at target offset \(offset), beyond any device; the journal is damaged or forged")
        }
        return UndoExtent(position: position, targetOffset: offset, length: Int(length))
    }

    /// Throws when an extent reaches past the target's end: applying it would write outside the
    /// target (or extend a file target). Checked for every extent before a rollback writes anything.
    static func checkFits(_ extents: [UndoExtent], targetSize: UInt64, directory: String) throws {
        for extent in extents where extent.end > targetSize {
            throw JournalError.corruptRecord(
                path: JournalFormat.segmentPath(directory, extent.position.segment), segment: extent.position.segment,
                offset: extent.position.offset,
                detail: "the UNDO record covers bytes \(extent.targetOffset)..<\(extent.end), past the end of the target "
                    + "(\(targetSize) bytes); the journal is damaged or forged, or the target is not this pair's")
        }
    }

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

    /// The same records as `extents(after:in:)`, found from the record headers alone in every
    /// segment but the last (checksums are verified later, as `SegmentReader.readVerified` reads each
    /// record), so a rollback reads most of the journal once instead of twice. The last segment —
    /// the only one that can end in a torn tail — is verified whole here, with SegmentScanner's
    /// rule, so that any checksum failure later is damage, never a tail.
    static func extentsFromHeaders(after position: JournalPosition, in directory: String) throws -> [UndoExtent] {
        let segments = try JournalFormat.segments(in: directory)
        var found: [UndoExtent] = []
        var foundTag = false
        for segment in segments where segment >= position.segment {
            if segment == segments.last {
                _ = try SegmentScanner.scan(directory: directory, segment: segment, isLast: true) { record in
                    if record.position == position {
                        foundTag = record.type == .tag
                    } else if record.position > position, record.type == .undo {
                        found.append(try extent(record, directory: directory))
                    }
                }
                break
            }
            let path = JournalFormat.segmentPath(directory, segment)
            let file = try PosixFile(path: path, flags: O_RDONLY)
            let size = try file.size()
            var offset: UInt64 = segment == position.segment ? position.offset : 0
            while offset < size {
                let head = try file.read(count: JournalFormat.headerSize + UndoRecord.fixedSize, at: offset)
                if let problem = JournalFormat.headerProblem(head.prefix(JournalFormat.headerSize), bytesAvailable: size - offset) {
                    throw JournalError.corruptRecord(path: path, segment: segment, offset: offset, detail: problem + " (not the last segment)")
                }
                let here = JournalPosition(segment: segment, offset: offset)
                let type = RecordType(rawValue: head[4])!
                let length = UInt64(head.readBE(UInt32.self, at: 8))
                if here == position {
                    foundTag = type == .tag
                } else if here > position, type == .undo {
                    let dataLength = head.count == JournalFormat.headerSize + UndoRecord.fixedSize
                        ? head.readBE(UInt32.self, at: JournalFormat.headerSize + 16) : 0
                    guard UInt64(UndoRecord.fixedSize) + UInt64(dataLength) == length else {
                        throw JournalError.corruptRecord(path: path, segment: segment, offset: offset,
                                                         detail: "UNDO data length \(dataLength) does not match the record's payload length \(length)")
                    }
                    found.append(try checked(position: here, offset: head.readBE(UInt64.self, at: JournalFormat.headerSize + 8),
                                             length: dataLength, directory: directory))
                }
                offset += UInt64(JournalFormat.headerSize) + length
            }
            if !foundTag && segment == position.segment { break }
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
        return try checked(position: record.position, offset: undo.offset, length: undo.length, directory: directory)
    }
}

/// Reads record data from the segments of one directory, keeping a few segment files open.
final class SegmentReader {
    let directory: String
    private var files: [UInt32: PosixFile] = [:]

    init(directory: String) { self.directory = directory }

    func read(_ extent: UndoExtent, from start: Int = 0, count: Int? = nil) throws -> [UInt8] {
        try file(extent.position.segment).read(count: count ?? extent.length - start, at: extent.dataStart + UInt64(start))
    }

    /// The record's data after checking its checksum; nil when it does not verify.
    func readVerified(_ extent: UndoExtent) throws -> [UInt8]? {
        let record = try file(extent.position.segment).read(count: JournalFormat.headerSize + UndoRecord.fixedSize + extent.length,
                                                            at: extent.position.offset)
        guard record.count == JournalFormat.headerSize + UndoRecord.fixedSize + extent.length,
              JournalFormat.checksumMatches(header: record[..<JournalFormat.headerSize], payload: record[JournalFormat.headerSize...])
        else { return nil }
        return Array(record[(JournalFormat.headerSize + UndoRecord.fixedSize)...])
    }

    /// Starts reading a record the rollback will need soon (the undo phase reads backwards, where
    /// the kernel's readahead does not help).
    func prefetch(_ extent: UndoExtent) {
        (try? file(extent.position.segment))?.willNeed(
            offset: extent.position.offset, count: JournalFormat.headerSize + UndoRecord.fixedSize + extent.length)
    }

    private func file(_ segment: UInt32) throws -> PosixFile {
        if let file = files[segment] { return file }
        if files.count >= 16 { files.removeAll() }
        let file = try PosixFile(path: JournalFormat.segmentPath(directory, segment), flags: O_RDONLY)
        files[segment] = file
        return file
    }
}

/// Removing journal segments no recovery point needs any more.
public enum JournalPruning {
    /// Deletes the segments of a pair journal numbered below `segment` (the segment holding the
    /// oldest kept point's TAG record); never the last segment. Returns how many and their bytes.
    /// The directory is reached through `layout` without following links; only segment names are unlinked.
    public static func removeSegments(layout: RetentionLayout, pair: Identifier, before segment: UInt32) throws -> (count: Int, bytes: UInt64) {
        guard let directory = try layout.openJournal(pair) else { return (0, 0) }
        let all = try JournalFormat.segments(in: directory.path)
        var count = 0
        var bytes: UInt64 = 0
        // Oldest first, so a crash half-way leaves the numbering contiguous.
        for number in all.dropLast() where number < segment {
            if let size = try directory.unlinkFile(JournalFormat.segmentName(number)) {
                bytes += size
                count += 1
            }
        }
        if count > 0 { try directory.sync() }
        return (count, bytes)
    }
}
