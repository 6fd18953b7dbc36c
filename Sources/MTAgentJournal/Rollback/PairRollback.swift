import Foundation
import Glibc
import MTAgentCore

/// Where a rollback stands, for progress reporting.
public struct RollbackProgress: Sendable, Equatable {
    public enum Phase: String, Sendable, Codable {
        /// Copying the target's newest content of the blocks about to change into the saved store.
        case saving
        /// Writing blocks back to the newest content (after an earlier rollback to an older point).
        case forward
        /// Applying undo records, newest first.
        case undoing
    }
    public var phase: Phase
    public var bytesDone: UInt64
    public var bytesTotal: UInt64
}

public struct RollbackStats: Sendable, Codable, Equatable {
    /// Target bytes copied into the saved store by this run.
    public var savedBytes: UInt64 = 0
    /// Target bytes written back from the saved store (blocks the new point does not change).
    public var forwardBytes: UInt64 = 0
    /// UNDO records applied and their bytes.
    public var undoRecords: Int = 0
    public var undoBytes: UInt64 = 0
    /// Wall time of each phase: finding the records, saving, writing forward, undoing (with the
    /// target's fdatasync).
    public var seconds = Phases()
    public struct Phases: Sendable, Codable, Equatable {
        public var scan = 0.0, saving = 0.0, forward = 0.0, undoing = 0.0
    }
    public init() {}
}

/// Moves one pair's target to a recovery point, any number of times, in any direction, until commit.
///
/// The target holds the newest data ("head") when replication stops. The **saved store**
/// (`savedDirectory`, segment files of UNDO records with seq 0, docs/JOURNAL.md) receives the head
/// content of every block before a rollback first overwrites it, and one invariant makes every step
/// crash-safe: *a block that is not in the saved store holds its head content*. To reach the point
/// whose TAG record is at P:
///
/// 1. S = the blocks covered by UNDO records after P; H = the blocks in the saved store.
/// 2. Copy the target's content of S \ H (head content, by the invariant) into the saved store;
///    fdatasync it. Now S ⊆ H, so the target may be written anywhere in S ∪ H.
/// 3. Write the saved head content of H \ S (blocks the point does not change, perhaps rolled back by
///    an earlier failover to an older point).
/// 4. Apply the UNDO records after P newest first (each block ends with the oldest record after P:
///    its content at the tag); fdatasync the target.
///
/// Every step is idempotent, so a run killed anywhere is finished by running it again — to the same
/// point or to another one. The target is opened without following a link and must be `admitted`,
/// the node the target rules judged (nil only in tests on scratch files). `progress` is called after every record; throwing from it stops the
/// rollback there (the next run finishes it).
public enum PairRollback {
    /// Records in the saved store are at most this long (like the journal's UNDO records).
    static let maxRecord = JournalFormat.maxUndoData

    @discardableResult
    public static func roll(
        pairJournal: String, savedDirectory: String, to position: JournalPosition, target: String, admitted: AdmittedTarget.Node?,
        segmentLimit: UInt64 = 256 << 20, progress: (RollbackProgress) throws -> Void = { _ in }
    ) throws -> RollbackStats {
        let clock = ContinuousClock()
        var mark = clock.now
        func lap() -> Double {
            let now = clock.now
            defer { mark = now }
            let d = now - mark
            return Double(d.components.seconds) + Double(d.components.attoseconds) / 1e18
        }
        // Headers only: each record's checksum is verified when step 4 reads it, so the journal is
        // read once.
        let undo = try UndoIndex.extentsFromHeaders(after: position, in: pairJournal)
        let saved = try UndoIndex.all(in: savedDirectory)
        let file = try PosixFile.openTarget(target, flags: O_RDWR, admitted: admitted)
        let targetSize = try file.size()
        let blockSize = Int(JournalFormat.blockSize)
        // Before anything is written: a record that does not fit the target stops the rollback here.
        try UndoIndex.checkFits(undo, targetSize: targetSize, directory: pairJournal)
        try UndoIndex.checkFits(saved.extents, targetSize: targetSize, directory: savedDirectory)

        var changed = IndexSet()  // S
        for extent in undo { changed.insert(integersIn: extent.blocks) }
        var held = IndexSet()  // H
        for extent in saved.extents { held.insert(integersIn: extent.blocks) }
        let toSave = changed.subtracting(held)
        let forward = held.subtracting(changed)

        func bytes(_ blocks: IndexSet) -> UInt64 {
            blocks.rangeView.reduce(0) { sum, range in
                let start = UInt64(range.lowerBound * blockSize)
                return sum + min(UInt64(range.upperBound * blockSize), targetSize) - min(start, targetSize)
            }
        }
        var stats = RollbackStats()
        stats.seconds.scan = lap()

        // 2. Save the head content of every block this rollback changes for the first time.
        let saveTotal = bytes(toSave)
        if saveTotal > 0 {
            let writer = try SegmentWriter(directory: savedDirectory, segment: saved.segment, size: saved.end, limit: segmentLimit)
            try progress(RollbackProgress(phase: .saving, bytesDone: 0, bytesTotal: saveTotal))
            var pieces: [(offset: UInt64, length: Int)] = []
            for range in toSave.rangeView {
                var block = range.lowerBound
                while block < range.upperBound {
                    let end = min(range.upperBound, block + maxRecord / blockSize)
                    let offset = UInt64(block * blockSize)
                    pieces.append((offset, Int(min(UInt64(end * blockSize), targetSize) - offset)))
                    block = end
                }
            }
            // The changed blocks are scattered over the target: ask for the next pieces while one
            // is hashed and appended, so the reads overlap.
            let lookahead = 8
            for p in pieces.prefix(lookahead) { file.willNeed(offset: p.offset, count: p.length) }
            for (i, piece) in pieces.enumerated() {
                if i + lookahead < pieces.count { file.willNeed(offset: pieces[i + lookahead].offset, count: pieces[i + lookahead].length) }
                let data = try file.read(count: piece.length, at: piece.offset)
                try writer.append(.undo, UndoRecord(seq: 0, offset: piece.offset, length: UInt32(data.count)).encode(data: data[...]))
                stats.savedBytes += UInt64(data.count)
                // Write back while reading on, so the fdatasync at the end waits for little.
                if i % 16 == 15 { writer.startWriteback() }
                try progress(RollbackProgress(phase: .saving, bytesDone: stats.savedBytes, bytesTotal: saveTotal))
            }
            try writer.sync()
        }
        stats.seconds.saving = lap()

        // 3. Blocks the point leaves at their newest content.
        let forwardTotal = bytes(forward)
        if forwardTotal > 0 {
            let reader = SegmentReader(directory: savedDirectory)
            for extent in saved.extents {
                var wanted = IndexSet(integersIn: extent.blocks)
                wanted.formIntersection(forward)
                for range in wanted.rangeView {
                    let start = range.lowerBound * blockSize - Int(extent.targetOffset)
                    let count = min(range.upperBound * blockSize - Int(extent.targetOffset), extent.length) - start
                    let data = try reader.read(extent, from: start, count: count)
                    try file.write(data, at: extent.targetOffset + UInt64(start))
                    stats.forwardBytes += UInt64(data.count)
                }
                try progress(RollbackProgress(phase: .forward, bytesDone: stats.forwardBytes, bytesTotal: forwardTotal))
            }
        }

        stats.seconds.forward = lap()

        // 4. The point's own content, newest record first so the oldest after P is written last.
        let undoTotal = undo.reduce(UInt64(0)) { $0 + UInt64($1.length) }
        let reader = SegmentReader(directory: pairJournal)
        let newestFirst = Array(undo.reversed())
        let lookahead = 8
        for i in 0..<min(lookahead, newestFirst.count) { reader.prefetch(newestFirst[i]) }
        for (i, extent) in newestFirst.enumerated() {
            if i + lookahead < newestFirst.count { reader.prefetch(newestFirst[i + lookahead]) }
            guard let data = try reader.readVerified(extent) else {
                throw JournalError.corruptRecord(
                    path: JournalFormat.segmentPath(pairJournal, extent.position.segment), segment: extent.position.segment,
                    offset: extent.position.offset, detail: "checksum mismatch in an UNDO record the rollback needs; "
                        + "the target is between points — fail over to a newer point (its saved content is intact)")
            }
            try file.write(data, at: extent.targetOffset)
            if i % 16 == 15 { file.startWriteback() }
            stats.undoRecords += 1
            stats.undoBytes += UInt64(data.count)
            try progress(RollbackProgress(phase: .undoing, bytesDone: stats.undoBytes, bytesTotal: undoTotal))
        }
        try file.datasync()
        stats.seconds.undoing = lap()
        return stats
    }
}
