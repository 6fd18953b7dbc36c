import MTAgentCore
import Foundation
import Testing
@testable import MTAgentJournal

@Suite("journal recovery after a crash", .tags(.medium))
struct CrashTests {
    /// Cuts the last segment at (a sample of) every byte offset of its last batch, as a crash would, then
    /// reopens: the durable state must be the last intact COMMIT, an ABORT must close surviving uncommitted
    /// records, every point must restore, and after the sender's resend the last tag must restore too.
    @Test func crashInTheLastBatch() throws {
        var rng = SplitMix(seed: 20)
        let original = try Fixture()
        let size = 128 * 1024
        let (target, _, applier) = try original.openNewPair("d", size: size, rng: &rng)
        var driver = Driver(applier: applier, source: try readFile(target))
        try driver.resync()
        var snapshots: [UInt64: [UInt8]] = [:]
        for tag in UInt64(1)...4 {
            for _ in 0..<3 { driver.write(Int.random(in: 0..<(size - 9000), using: &rng), rng.bytes(Int.random(in: 1...9000, using: &rng))) }
            driver.tag(tag)
            snapshots[tag] = driver.source
            _ = try applier.commit()
        }
        let seqBefore = driver.seq
        let targetBefore = try readFile(target)
        let journal = original.journal("d")
        let segment = try #require(try JournalFormat.segments(in: journal).last)
        let segmentPath = JournalFormat.segmentPath(journal, segment)
        let batchStart = UInt64(try readFile(segmentPath).count)

        // The last batch, kept so it can be resent after the "crash".
        var lastOps: [PairOp] = []
        for _ in 0..<4 {
            let offset = Int.random(in: 0..<(size - 9000), using: &rng)
            let data = rng.bytes(Int.random(in: 1...9000, using: &rng))
            driver.write(offset, data)
            lastOps.append(.write(seq: driver.seq, offset: UInt64(offset), data: data))
        }
        driver.tag(5)
        lastOps.append(.tag(seq: driver.seq, tagID: 5, kind: .crash, name: "tag-5", sourceTime: 5000))
        snapshots[5] = driver.source
        _ = try applier.commit()
        applier.close()
        let fullJournal = try readFile(segmentPath)
        let targetAfter = try readFile(target)
        let lastBatch = try records(journal).filter { $0.position.segment == segment && $0.position.offset >= batchStart }
        let commitStart = try #require(lastBatch.last).position.offset
        // The COMMIT is whole from here on; a PAD record may follow it to the end of its block.
        let commitEnd = commitStart + lastBatch.last!.size
        #expect(lastBatch.last?.type == .commit)
        let recordEnds = Set(lastBatch.map { $0.position.offset + $0.size })

        var cuts = Set(stride(from: batchStart, through: UInt64(fullJournal.count), by: 251))
        for end in recordEnds { cuts.formUnion([end - 1, end, end + 1]) }
        cuts.insert(batchStart)
        for cut in cuts.sorted() where cut <= UInt64(fullJournal.count) {
            let fixture = try Fixture()
            let copyJournal = fixture.journal("d")
            try FileManager.default.createDirectory(atPath: copyJournal, withIntermediateDirectories: true)
            for s in try JournalFormat.segments(in: journal) {
                try copyFile(JournalFormat.segmentPath(journal, s), JournalFormat.segmentPath(copyJournal, s))
            }
            try writeFile(JournalFormat.segmentPath(copyJournal, segment), Array(fullJournal[..<Int(cut)]))
            // Undo records are durable before the target is written: before they are all there, the
            // target cannot have changed; after, all of the batch's writes may have happened.
            let copyTarget = fixture.directory + "/d"
            try writeFile(copyTarget, cut < commitStart ? targetBefore : targetAfter)
            let copyPair = try fixture.catalog.registerPair(id: "d", group: "g", target: copyTarget,
                                                            sourceSize: UInt64(size))

            let reopened = try fixture.open(copyPair)
            let complete = cut >= commitEnd
            #expect(reopened.durableSeq == (complete ? driver.seq : seqBefore), "cut \(cut)")
            let after = try records(copyJournal).filter { $0.position.segment == segment && $0.position.offset >= batchStart }
            let survivors = lastBatch.filter { $0.position.offset + $0.size <= cut }
            if complete {
                #expect(after.count == lastBatch.count)
            } else if survivors.isEmpty {
                #expect(after.isEmpty, "cut \(cut): nothing to abort")
            } else {
                #expect(after.map(\.type) == survivors.map(\.type) + [.abort], "cut \(cut)")
            }

            let points = try fixture.catalog.recoveryPoints(group: "g")
            #expect(points.map(\.tagID) == (complete ? [5, 4, 3, 2, 1] : [4, 3, 2, 1]), "cut \(cut)")
            for point in points {
                #expect(digest(try restoredCopy(fixture: fixture, pairID: "d", target: copyTarget,
                                         position: point.positions["d"]!)) == digest(snapshots[point.tagID]),
                        "cut \(cut) point \(point.tagID)")
            }

            // The sender resends everything after durableSeq.
            for op in lastOps {
                #expect(reopened.accept(op) == (op.seq <= reopened.durableSeq ? .duplicate : .queued))
            }
            _ = try reopened.commit()
            #expect(digest(try readFile(copyTarget)) == digest(driver.source), "cut \(cut)")
            let final = try fixture.catalog.recoveryPoints(group: "g")
            #expect(final.map(\.tagID) == [5, 4, 3, 2, 1], "cut \(cut)")
            for point in final {
                #expect(digest(try restoredCopy(fixture: fixture, pairID: "d", target: copyTarget,
                                         position: point.positions["d"]!)) == digest(snapshots[point.tagID]),
                        "cut \(cut) after resend, point \(point.tagID)")
            }
            reopened.close()
        }
    }

    @Test func corruptionInTheMiddleRefusesToOpen() throws {
        var rng = SplitMix(seed: 21)
        let fixture = try Fixture()
        let (target, pair, applier) = try fixture.openNewPair("d", size: 65536, rng: &rng)
        var driver = Driver(applier: applier, source: try readFile(target))
        try driver.resync()
        driver.tag(1)
        driver.write(0, rng.bytes(5000))
        driver.tag(2)
        _ = try applier.commit()
        applier.close()

        let journal = fixture.journal("d")
        let all = try records(journal)
        let undo = try #require(all.first { $0.type == .undo })
        #expect(undo.position != all.last?.position)
        let path = JournalFormat.segmentPath(journal, undo.position.segment)
        var bytes = try readFile(path)
        bytes[Int(undo.position.offset) + 100] ^= 0xFF
        try writeFile(path, bytes)

        let error = #expect(throws: JournalError.self) { try fixture.open(pair) }
        guard case .corruptRecord(_, let segment, let offset, _) = error else {
            Issue.record("expected corruptRecord, got \(String(describing: error))")
            return
        }
        #expect(segment == undo.position.segment)
        #expect(offset == undo.position.offset)
        #expect(error?.description.contains("segment \(segment)") == true)
        #expect(error?.description.contains("offset \(offset)") == true)
        #expect(digest(try readFile(path)) == digest(bytes), "a refused journal must not be modified")
    }

    /// A damaged last record is a torn tail: cut, and the pair opens at the previous COMMIT.
    @Test func damagedLastRecordIsCut() throws {
        var rng = SplitMix(seed: 22)
        let fixture = try Fixture()
        let (target, pair, applier) = try fixture.openNewPair("d", size: 65536, rng: &rng)
        var driver = Driver(applier: applier, source: try readFile(target))
        try driver.resync()
        let resynced = driver.seq
        driver.write(0, rng.bytes(100))
        _ = try applier.commit()
        applier.close()
        let journal = fixture.journal("d")
        let last = try #require(try records(journal).last)
        #expect(last.type == .commit)
        let path = JournalFormat.segmentPath(journal, last.position.segment)
        var bytes = try readFile(path)
        // The COMMIT's last byte: the PAD record after it in the same block stays valid, as a torn
        // block write can leave it, and must not make this damage in the middle.
        bytes[Int(last.position.offset + last.size) - 1] ^= 0xFF
        try writeFile(path, bytes)

        let reopened = try fixture.open(pair)
        #expect(reopened.durableSeq == resynced)
        // The COMMIT is cut; the batch's UNDO record survives and is closed by an ABORT.
        let after = try records(journal).filter { $0.position >= last.position }
        #expect(after.map(\.type) == [.abort])
        #expect(try records(journal).suffix(3).map(\.type) == [.commit, .undo, .abort])
    }
}
