import MTAgentCore
import Glibc

public struct RestoreStats: Sendable, Equatable {
    /// UNDO records applied.
    public var records: Int
    /// Bytes written to the target.
    public var bytes: UInt64
}

/// Brings a copy of a pair's target back to a recovery point.
public enum UndoRestore {
    /// Applies every UNDO record after the TAG record at `position`, newest first, onto `target`.
    ///
    /// Newest first is what makes it correct without the copy bitmap: when a block was saved more than once
    /// after the point (the bitmap was lost in a restart, or a later interval saved it again), the oldest
    /// record holds the content at the point and it is written last. Records in aborted ranges are included:
    /// their target writes may have partly happened. A torn tail (never synced, so never followed by a target
    /// write) is ignored; damage anywhere else throws.
    @discardableResult
    public static func restore(pairJournal: String, to position: JournalPosition, target: String) throws
        -> RestoreStats
    {
        let segments = try JournalFormat.segments(in: pairJournal)
        struct Pending {
            var position: JournalPosition
            var targetOffset: UInt64
            var length: Int
        }
        var pending: [Pending] = []
        var foundTag = false
        for segment in segments where segment >= position.segment {
            _ = try SegmentScanner.scan(directory: pairJournal, segment: segment,
                                        isLast: segment == segments.last) { record in
                if record.position == position {
                    foundTag = record.type == .tag
                    return
                }
                guard record.position > position, record.type == .undo else { return }
                guard let undo = UndoRecord(payload: record.payload) else {
                    throw JournalError.corruptRecord(
                        path: JournalFormat.segmentPath(pairJournal, segment), segment: segment,
                        offset: record.position.offset, detail: "checksum is valid but the UNDO payload does not parse")
                }
                pending.append(Pending(position: record.position, targetOffset: undo.offset,
                                       length: Int(undo.length)))
            }
        }
        guard foundTag else { throw JournalError.positionNotFound(position) }

        // The scan verified every checksum; the data is read again record by record so memory stays small.
        let file = try PosixFile(path: target, flags: O_RDWR)
        var stats = RestoreStats(records: 0, bytes: 0)
        var openSegment: (number: UInt32, file: PosixFile)?
        for undo in pending.reversed() {
            if openSegment?.number != undo.position.segment {
                openSegment = (undo.position.segment, try PosixFile(
                    path: JournalFormat.segmentPath(pairJournal, undo.position.segment), flags: O_RDONLY))
            }
            let dataStart = undo.position.offset + UInt64(JournalFormat.headerSize + UndoRecord.fixedSize)
            let data = try openSegment!.file.read(count: undo.length, at: dataStart)
            try file.write(data, at: undo.targetOffset)
            stats.records += 1
            stats.bytes += UInt64(data.count)
        }
        try file.datasync()
        return stats
    }
}
