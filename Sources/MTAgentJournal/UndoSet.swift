/// The 4 KiB blocks of a target whose old content is already in the journal since the last tag
/// (DESIGN §7's "already copied in this interval" set), as sorted, disjoint, non-adjacent ranges
/// of block numbers: a sequential resync is one range however large the disk, so memory follows
/// the number of separate runs written, never the disk's size.
///
/// Bounded by `maxRanges` (config `undo_set_max_ranges`): when an insert leaves more ranges than
/// that, the set is emptied. That costs journal space, never correctness — a block saved again
/// after the drop gets a second UNDO record, and restore applies records newest first, so the
/// oldest one after a point (its content at the point) is written last.
public struct UndoSet {
    /// `undo_set_max_ranges`'s default: 1 MiB of ranges (2 MiB with the array's spare capacity).
    public static let defaultMaxRanges = 65536

    /// Sorted by lowerBound; no two overlap or touch.
    private(set) var ranges: [Range<UInt64>] = []
    let maxRanges: Int

    init(maxRanges: Int) { self.maxRanges = max(1, maxRanges) }

    /// Bytes held by the ranges (what `maxRanges` bounds; the array may hold up to twice this).
    var bytes: Int { ranges.capacity * MemoryLayout<Range<UInt64>>.stride }

    /// Adds `blocks`; returns the runs of it that were not in the set yet (their old content must
    /// be saved), in order, and whether the set was emptied because it outgrew `maxRanges`.
    mutating func insert(_ blocks: Range<UInt64>) -> (new: [Range<UInt64>], dropped: Bool) {
        guard !blocks.isEmpty else { return ([], false) }
        // The first range that overlaps or touches `blocks` (or lies after it).
        var low = 0, high = ranges.count
        while low < high {
            let mid = (low + high) / 2
            if ranges[mid].upperBound < blocks.lowerBound { low = mid + 1 } else { high = mid }
        }
        let first = low
        var new: [Range<UInt64>] = []
        var cursor = blocks.lowerBound
        var end = first
        while end < ranges.count, ranges[end].lowerBound <= blocks.upperBound {
            let r = ranges[end]
            if r.lowerBound > cursor { new.append(cursor..<min(r.lowerBound, blocks.upperBound)) }
            cursor = max(cursor, r.upperBound)
            end += 1
        }
        if cursor < blocks.upperBound { new.append(cursor..<blocks.upperBound) }
        if end == first {
            ranges.insert(blocks, at: first)
        } else {
            let merged = min(blocks.lowerBound, ranges[first].lowerBound)..<max(blocks.upperBound, ranges[end - 1].upperBound)
            ranges[first] = merged
            if end > first + 1 { ranges.removeSubrange((first + 1)..<end) }
        }
        guard ranges.count > maxRanges else { return (new, false) }
        ranges = []
        return (new, true)
    }

    /// A tag was made durable: the next interval starts empty.
    mutating func removeAll() { ranges.removeAll(keepingCapacity: ranges.capacity <= 1024) }

    func contains(_ block: UInt64) -> Bool {
        var low = 0, high = ranges.count
        while low < high {
            let mid = (low + high) / 2
            if ranges[mid].upperBound <= block { low = mid + 1 } else { high = mid }
        }
        return low < ranges.count && ranges[low].contains(block)
    }
}
