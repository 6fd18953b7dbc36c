import MTAgentCore
import Glibc

public struct RestoreStats: Sendable, Equatable {
    /// UNDO records applied.
    public var records: Int
    /// Bytes written to the target.
    public var bytes: UInt64
}

/// Brings a copy of a pair's target back to a recovery point, without saving what it overwrites
/// (tests and tools; `PairRollback` is what failover uses).
public enum UndoRestore {
    /// Applies every UNDO record after the TAG record at `position`, newest first, onto `target`.
    ///
    /// Newest first is what makes it correct without the copy bitmap: when a block was saved more than once
    /// after the point (the bitmap was lost in a restart, or a later interval saved it again), the oldest
    /// record holds the content at the point and it is written last.
    @discardableResult
    public static func restore(pairJournal: String, to position: JournalPosition, target: String) throws
        -> RestoreStats
    {
        // The scan verified every checksum; the data is read again record by record so memory stays small.
        let undo = try UndoIndex.extents(after: position, in: pairJournal)
        let file = try PosixFile.openTarget(target, flags: O_RDWR, admitted: nil)
        try UndoIndex.checkFits(undo, targetSize: try file.size(), directory: pairJournal)
        let reader = SegmentReader(directory: pairJournal)
        var stats = RestoreStats(records: 0, bytes: 0)
        for extent in undo.reversed() {
            let data = try reader.read(extent)
            try file.write(data, at: extent.targetOffset)
            stats.records += 1
            stats.bytes += UInt64(data.count)
        }
        try file.datasync()
        return stats
    }
}
