import Foundation
import MTAgentCore
import Testing
@testable import MTAgentJournal

/// PairRollback: moving a target between recovery points any number of times, and finishing a
/// rollback interrupted at any moment.
@Suite("Rollback to recovery points", .tags(.medium))
struct RollbackTests {
    /// A journaled pair with a random workload: unaligned writes, overlaps, rewrites within an
    /// interval, tags; the source content at every tag is kept.
    struct Workload {
        let fixture: Fixture
        let pair: PairInfo
        var snapshots: [(tagID: UInt64, position: JournalPosition, content: [UInt8])] = []
        var head: [UInt8] = []

        init(seed: UInt64, size: Int = 1 << 20, tags: Int = 12, segmentLimit: UInt64 = 64 << 10) throws {
            fixture = try Fixture()
            var rng = SplitMix(seed: seed)
            let target = try fixture.makeTarget("target.img", size: size, rng: &rng)
            pair = try fixture.catalog.registerPair(id: "p", group: "g", target: target, sourceSize: UInt64(size))
            let applier = try fixture.open(pair, segmentLimit: segmentLimit)
            var driver = Driver(applier: applier, source: try readFile(target))
            try driver.resync()
            for tag in 1...UInt64(tags) {
                for _ in 0..<Int.random(in: 1...8, using: &rng) {
                    // Runs near earlier ones so blocks are rewritten within and across intervals.
                    let length = Int.random(in: 1...40_000, using: &rng)
                    let offset = Int.random(in: 0...(size - length), using: &rng)
                    driver.write(offset, rng.bytes(length))
                    if Bool.random(using: &rng) { _ = try applier.commit() }
                }
                driver.tag(tag, kind: tag % 4 == 0 ? .app : .crash)
                _ = try applier.commit()
                snapshots.append((tag, try fixture.catalog.durableTags(pair: "p")[tag]!, driver.source))
            }
            // Writes after the last tag: the head is newer than every point.
            driver.write(0, rng.bytes(9000))
            _ = try applier.commit()
            head = driver.source
            applier.close()
        }

        var saved: String { fixture.directory + "/saved" }

        func roll(to index: Int, progress: (RollbackProgress) throws -> Void = { _ in }) throws -> RollbackStats {
            try PairRollback.roll(pairJournal: fixture.journal("p"), savedDirectory: saved,
                                  to: snapshots[index].position, target: pair.target, admitted: nil, segmentLimit: 32 << 10, progress: progress)
        }
    }

    @Test(arguments: [UInt64(1), 2, 3])
    func everyPointInAnyOrderAndBackToTheNewest(seed: UInt64) throws {
        let w = try Workload(seed: seed)
        var rng = SplitMix(seed: seed ^ 0xABCD)
        var order = Array(w.snapshots.indices) + Array(w.snapshots.indices)
        order.shuffle(using: &rng)
        for index in order {
            _ = try w.roll(to: index)
            #expect(digest(try readFile(w.pair.target)) == digest(w.snapshots[index].content), "point \(index + 1)")
        }
        // Changing back to the newest point, then further back again, stays exact.
        _ = try w.roll(to: w.snapshots.count - 1)
        #expect(try readFile(w.pair.target) == w.snapshots.last!.content)
        _ = try w.roll(to: 0)
        #expect(try readFile(w.pair.target) == w.snapshots[0].content)
    }

    @Test func theSavedStoreHoldsTheHeadSoTheNewestPointNeedsNoUndo() throws {
        let w = try Workload(seed: 7)
        let first = try w.roll(to: 0)
        #expect(first.savedBytes > 0 && first.undoRecords > 0 && first.forwardBytes == 0)
        // Rolling to the same point again saves nothing new.
        let again = try w.roll(to: 0)
        #expect(again.savedBytes == 0)
        #expect(try readFile(w.pair.target) == w.snapshots[0].content)
        // Newest point: blocks changed after it come back from the saved store.
        let newest = try w.roll(to: w.snapshots.count - 1)
        #expect(newest.forwardBytes > 0 && newest.savedBytes == 0)
        #expect(try readFile(w.pair.target) == w.snapshots.last!.content)
    }

    /// A rollback stopped at a random moment (after any number of saved records, forward writes or
    /// undo writes) and run again — to the same point or another — ends exact.
    @Test(arguments: [UInt64(11), 12, 13, 14])
    func interruptedRollbacksFinishExactly(seed: UInt64) throws {
        let w = try Workload(seed: seed, tags: 10)
        var rng = SplitMix(seed: seed)
        var interrupted = 0
        for _ in 0..<12 {
            let index = Int.random(in: 0..<w.snapshots.count, using: &rng)
            let stopAfter = Int.random(in: 0...30, using: &rng)
            var calls = 0
            do {
                _ = try w.roll(to: index) { _ in
                    calls += 1
                    if calls > stopAfter { throw Interrupt() }
                }
            } catch is Interrupt {
                interrupted += 1
                // The next run may choose another point: the invariant holds either way.
                let next = Bool.random(using: &rng) ? index : Int.random(in: 0..<w.snapshots.count, using: &rng)
                _ = try w.roll(to: next)
                #expect(try readFile(w.pair.target) == w.snapshots[next].content, "after an interruption, point \(next + 1)")
                continue
            }
            #expect(try readFile(w.pair.target) == w.snapshots[index].content)
        }
        #expect(interrupted > 0)
    }

    /// What a crash can leave at the end of the journal: a record cut short, or a whole-length one
    /// whose payload never reached the disk. Neither was followed by a target write.
    @Test(arguments: [false, true])
    func aTornTailIsNotUndone(wholeLength: Bool) throws {
        let w = try Workload(seed: 8, tags: 4)
        let journal = w.fixture.journal("p")
        let last = try JournalFormat.segments(in: journal).last!
        let path = JournalFormat.segmentPath(journal, last)
        var record = JournalFormat.encode(type: .undo, payload: UndoRecord(seq: 99, offset: 0, length: 8192).encode(data: [UInt8](repeating: 0xEE, count: 8192)[...]))
        if wholeLength {
            for i in 200..<record.count { record[i] = 0 }  // the header made it, the data did not
        } else {
            record = Array(record.prefix(3000))
        }
        let handle = try FileHandle(forWritingTo: URL(fileURLWithPath: path))
        handle.seekToEndOfFile()
        handle.write(Data(record))
        try handle.close()
        for index in [1, 0, 3] {
            _ = try w.roll(to: index)
            #expect(try readFile(w.pair.target) == w.snapshots[index].content, "point \(index + 1)")
        }
    }

    /// Damage in the middle is never skipped: the rollback stops with the place named, and the
    /// target can still be moved to a point after the damage.
    @Test func damageInTheMiddleStopsTheRollbackAndNewerPointsStillWork() throws {
        let w = try Workload(seed: 9, tags: 8)
        let journal = w.fixture.journal("p")
        // An UNDO record between points 3 and 4.
        let victim = try records(journal).first { $0.type == .undo && $0.position > w.snapshots[2].position && $0.position < w.snapshots[3].position }
        let position = try #require(victim?.position)
        let path = JournalFormat.segmentPath(journal, position.segment)
        var bytes = try readFile(path)
        bytes[Int(position.offset) + JournalFormat.headerSize + UndoRecord.fixedSize + 5] ^= 0xFF
        try writeFile(path, bytes)
        do {
            _ = try w.roll(to: 0)
            Issue.record("a rollback through a damaged record succeeded")
        } catch let JournalError.corruptRecord(_, segment, offset, _) {
            #expect(segment == position.segment && offset == position.offset)
        }
        for index in [5, 3, 7] {
            _ = try w.roll(to: index)
            #expect(try readFile(w.pair.target) == w.snapshots[index].content, "point \(index + 1)")
        }
    }

    @Test func aPositionThatIsNotATagIsRefusedBeforeAnythingIsWritten() throws {
        let w = try Workload(seed: 5, tags: 3)
        let before = try readFile(w.pair.target)
        let bogus = JournalPosition(segment: w.snapshots[1].position.segment, offset: w.snapshots[1].position.offset + 1)
        #expect(throws: JournalError.self) {
            try PairRollback.roll(pairJournal: w.fixture.journal("p"), savedDirectory: w.saved, to: bogus, target: w.pair.target, admitted: nil)
        }
        #expect(try readFile(w.pair.target) == before)
        #expect(!FileManager.default.fileExists(atPath: w.saved + "/seg-00000001.mtj"))
    }
}

/// A simulated kill: thrown from the progress callback, it stops the rollback after that record.
struct Interrupt: Error {}

/// UNDO records come from disk: one with a valid checksum but an offset or length that does not fit
/// the target (forged, or written by a bug) must stop a rollback or restore with a clear error
/// before anything is written — never trap the service, never write past the target's end.
@Suite("Forged UNDO records", .tags(.medium))
struct ForgedUndoTests {
    enum Place: String, CaseIterable { case lastSegment, earlierSegment }

    static let cases: [(offset: UInt64, length: Int)] = [
        (UInt64.max - 1000, 4096),  // offset + length overflows
        (1 << 63, 4096),  // beyond any off_t
        (1 << 20, 4096),  // at the target's end (the target is 1 MiB)
        ((1 << 20) - 100, 4096),  // straddles the end
    ]

    @Test(arguments: Place.allCases, 0..<cases.count)
    func aForgedUndoRecordFailsTheRollbackCleanly(place: Place, index: Int) throws {
        let (offset, length) = Self.cases[index]
        let w = try RollbackTests.Workload(seed: 21, tags: 3)
        let journal = w.fixture.journal("p")
        let segments = try JournalFormat.segments(in: journal)
        let point = w.snapshots[0].position
        let segment = place == .lastSegment ? segments.last! : point.segment
        try #require(place == .lastSegment || segment != segments.last, "the workload must span segments")
        // Appended at the end of a segment: a well-formed record the rollback to point 1 must undo.
        let path = JournalFormat.segmentPath(journal, segment)
        let forgedAt = UInt64(try readFile(path).count)
        let record = JournalFormat.encode(type: .undo, payload: UndoRecord(seq: 999, offset: offset, length: UInt32(length))
            .encode(data: ArraySlice(repeating: 0xEE, count: length)))
        try writeFile(path, try readFile(path) + record)
        let before = try readFile(w.pair.target)

        func expectCorrupt(_ what: String, _ body: () throws -> Void) {
            do {
                try body()
                Issue.record("\(what) applied a forged UNDO record at offset \(offset)")
            } catch let JournalError.corruptRecord(_, s, o, detail) {
                #expect(s == segment && o == forgedAt, "\(what): the error must name the forged record")
                #expect(detail.contains("\(offset)"), "\(what): \(detail)")
            } catch {
                Issue.record("\(what): expected corruptRecord, got \(error)")
            }
        }
        expectCorrupt("restore") {
            _ = try UndoRestore.restore(pairJournal: journal, to: point, target: w.pair.target)
        }
        #expect(try readFile(w.pair.target) == before, "restore must write nothing")
        expectCorrupt("rollback") { _ = try w.roll(to: 0) }
        #expect(try readFile(w.pair.target) == before, "rollback must write nothing")
    }
}
