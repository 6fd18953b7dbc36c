import MTAgentCore
import Crypto
import Foundation
import Testing
@testable import MTAgentJournal

@Suite("pair applier: sequence rules, undo and restore", .tags(.medium))
struct ApplierTests {
    /// Random unaligned writes (512-byte ones, ones crossing 4 KiB boundaries, ones touching the end),
    /// tags every few writes, commits at random points, small segments so the journal rolls; every recovery
    /// point must restore to the source content at its tag.
    @Test(arguments: [UInt64(1), 2, 3])
    func randomWritesRestoreEveryPoint(seed: UInt64) throws {
        var rng = SplitMix(seed: seed)
        let fixture = try Fixture()
        let size = 256 * 1024 + 1536   // not a multiple of 4 KiB: the last block is short
        let target = try fixture.makeTarget("disk0", size: size, rng: &rng)
        let pair = try fixture.catalog.registerPair(id: "disk0", group: "g", target: target, sourceSize: UInt64(size))
        let applier = try fixture.open(pair, segmentLimit: 64 * 1024)
        var driver = Driver(applier: applier, source: try readFile(target))
        try driver.resync()

        var snapshots: [UInt64: [UInt8]] = [:]
        var nextTag: UInt64 = 1
        for step in 0..<400 {
            let length: Int
            let offset: Int
            switch Int.random(in: 0..<4, using: &rng) {
            case 0:
                length = 512
                offset = Int.random(in: 0..<(size / 512), using: &rng) * 512
            case 1:   // crosses a 4 KiB boundary
                let boundary = Int.random(in: 1..<(size / 4096), using: &rng) * 4096
                offset = boundary - Int.random(in: 1...3000, using: &rng)
                length = Int.random(in: 2...9000, using: &rng)
            case 2:   // reaches the end of the target
                length = Int.random(in: 1...6000, using: &rng)
                offset = size - length
            default:
                length = Int.random(in: 1...20000, using: &rng)
                offset = Int.random(in: 0...(size - length), using: &rng)
            }
            #expect(driver.write(offset, rng.bytes(min(length, size - offset))) == .queued)
            if Int.random(in: 0..<5, using: &rng) == 0 {
                #expect(driver.tag(nextTag, kind: nextTag % 4 == 0 ? .app : .crash) == .queued)
                snapshots[nextTag] = driver.source
                nextTag += 1
            }
            if Int.random(in: 0..<7, using: &rng) == 0 || step == 399 {
                let outcome = try applier.commit()
                #expect(outcome.durableSeq == driver.seq)
                #expect(outcome.tags.allSatisfy { $0.eligible && $0.recoveryPointComplete })
            }
        }
        #expect(digest(try readFile(target)) == digest(driver.source))
        #expect(try JournalFormat.segments(in: fixture.journal("disk0")).count > 1)

        let points = try fixture.catalog.recoveryPoints(group: "g")
        #expect(points.count == snapshots.count)
        #expect(points.map(\.tagID) == snapshots.keys.sorted(by: >))
        for point in points {
            let restored = try restoredCopy(fixture: fixture, pairID: "disk0", target: target,
                                            position: point.positions["disk0"]!)
            #expect(digest(restored) == digest(snapshots[point.tagID]), "point \(point.tagID)")
        }
    }

    @Test func duplicatesAreIgnored() throws {
        var rng = SplitMix(seed: 10)
        let fixture = try Fixture()
        let (target, _, applier) = try fixture.openNewPair("d", size: 65536, rng: &rng)
        var driver = Driver(applier: applier, source: try readFile(target))
        try driver.resync()
        driver.write(0, [UInt8](repeating: 1, count: 4096))
        driver.write(4096, [UInt8](repeating: 2, count: 4096))
        _ = try applier.commit()
        // A resend after a reconnect, with different bytes: must not reach the target.
        #expect(applier.accept(.write(seq: driver.seq - 1, offset: 0, data: [UInt8](repeating: 9, count: 4096)))
                == .duplicate)
        #expect(applier.accept(.write(seq: driver.seq, offset: 4096, data: [UInt8](repeating: 9, count: 4096)))
                == .duplicate)
        let outcome = try applier.commit()
        #expect(outcome.durableSeq == driver.seq)
        #expect(digest(try readFile(target)) == digest(driver.source))
    }

    @Test func gapRequiresResyncAndNothingAfterIsApplied() throws {
        var rng = SplitMix(seed: 11)
        let fixture = try Fixture()
        let target = try fixture.makeTarget("d", size: 65536, rng: &rng)
        let pair = try fixture.catalog.registerPair(id: "d", group: "g", target: target, sourceSize: 65536)
        var applier = try fixture.open(pair)
        var driver = Driver(applier: applier, source: try readFile(target))
        try driver.resync()
        driver.write(0, [UInt8](repeating: 1, count: 100))
        let expected = driver.source
        let gapSeq = driver.seq + 2
        #expect(applier.accept(.write(seq: gapSeq, offset: 200, data: [7, 7, 7]))
                == .refused(.sequenceGap(expected: driver.seq + 1, got: gapSeq)))
        #expect(applier.state == .resyncRequired)
        #expect(applier.reason == "sequence gap: expected \(driver.seq + 1), got \(gapSeq)")
        if case .refused = applier.accept(.write(seq: gapSeq + 1, offset: 300, data: [8])) {} else {
            Issue.record("a write after the gap was not refused")
        }
        if case .refused = applier.accept(.tag(seq: gapSeq + 2, tagID: 1, kind: .crash, name: "", sourceTime: 0)) {} else {
            Issue.record("a tag after the gap was not refused")
        }
        let outcome = try applier.commit()
        #expect(outcome.durableSeq == driver.seq)
        #expect(outcome.state == .resyncRequired)
        #expect(digest(try readFile(target)) == digest(expected))
        #expect(try fixture.catalog.pair(id: "d")?.state == .resyncRequired)

        // The state and its reason survive a restart; only resyncBegin gets out of it.
        applier.close()
        applier = try fixture.open(pair)
        #expect(applier.state == .resyncRequired)
        #expect(applier.reason == "sequence gap: expected \(driver.seq + 1), got \(gapSeq)")
        #expect(applier.durableSeq == driver.seq)
        #expect(applier.accept(.resyncBegin(seq: gapSeq + 10)) == .queued)
        #expect(applier.state == .resyncing)
        #expect(applier.accept(.write(seq: gapSeq + 11, offset: 0, data: [5])) == .queued)
        #expect(try applier.commit().durableSeq == gapSeq + 11)
    }

    @Test func writePastTheEndIsRefused() throws {
        var rng = SplitMix(seed: 12)
        let fixture = try Fixture()
        let (target, _, applier) = try fixture.openNewPair("d", size: 8192, rng: &rng)
        let before = try readFile(target)
        #expect(applier.accept(.write(seq: 1, offset: 8000, data: [UInt8](repeating: 1, count: 193)))
                == .refused(.writeOutOfRange(offset: 8000, length: 193, targetSize: 8192)))
        #expect(applier.state == .resyncRequired)
        _ = try applier.commit()
        #expect(digest(try readFile(target)) == digest(before))
        #expect(applier.durableSeq == 0)
    }

    @Test func undoOnlyAfterTheBaseline() throws {
        var rng = SplitMix(seed: 13)
        let fixture = try Fixture()
        let (target, _, applier) = try fixture.openNewPair("d", size: 65536, rng: &rng)
        var driver = Driver(applier: applier, source: try readFile(target))
        driver.seq += 1; _ = applier.accept(.resyncBegin(seq: driver.seq))
        driver.write(0, rng.bytes(5000))
        driver.tag(1)
        let early = try applier.commit()
        #expect(early.tags.count == 1)
        #expect(early.tags.first?.eligible == false)
        #expect(applier.hasBaseline == false)
        #expect(try records(fixture.journal("d")).filter { $0.type == .undo }.isEmpty)

        driver.seq += 1; _ = applier.accept(.resyncDone(seq: driver.seq))
        _ = try applier.commit()
        #expect(applier.hasBaseline)
        #expect(applier.state == .inSync)
        driver.tag(2)
        let old = driver.source
        driver.write(100, rng.bytes(5000))   // blocks 0 and 1
        driver.tag(3)
        _ = try applier.commit()
        let undo = try records(fixture.journal("d")).filter { $0.type == .undo }.compactMap {
            UndoRecord(payload: $0.payload)
        }
        #expect(undo.map(\.offset) == [0])
        #expect(undo.map(\.length) == [8192])
        #expect(try fixture.catalog.recoveryPoints(group: "g").map(\.tagID) == [3, 2])
        let point = try #require(try fixture.catalog.recoveryPoints(group: "g").last)
        #expect(digest(try restoredCopy(fixture: fixture, pairID: "d", target: target,
                                        position: point.positions["d"]!)) == digest(old))
    }

    /// The copy bitmap is lost at a restart in the middle of a tag interval: the same blocks are saved
    /// again (content that already includes the first write), and restore must still reach the tag.
    @Test func bitmapLossStillRestores() throws {
        var rng = SplitMix(seed: 14)
        let fixture = try Fixture()
        let target = try fixture.makeTarget("d", size: 65536, rng: &rng)
        let pair = try fixture.catalog.registerPair(id: "d", group: "g", target: target, sourceSize: 65536)
        var applier = try fixture.open(pair)
        var driver = Driver(applier: applier, source: try readFile(target))
        try driver.resync()
        driver.tag(1)
        _ = try applier.commit()
        let atTag1 = driver.source
        driver.write(1000, rng.bytes(6000))
        _ = try applier.commit()
        applier.close()

        applier = try fixture.open(pair)
        driver = Driver(applier: applier, source: driver.source, seq: driver.seq)
        driver.write(2000, rng.bytes(6000))
        driver.tag(2)
        _ = try applier.commit()
        let atTag2 = driver.source
        driver.write(0, rng.bytes(9000))
        _ = try applier.commit()

        let undo = try records(fixture.journal("d")).filter { $0.type == .undo }.compactMap {
            UndoRecord(payload: $0.payload)
        }
        #expect(undo.filter { $0.offset == 0 }.count >= 2, "block 0 must have been saved twice")
        let points = try fixture.catalog.recoveryPoints(group: "g")
        #expect(points.map(\.tagID) == [2, 1])
        #expect(digest(try restoredCopy(fixture: fixture, pairID: "d", target: target,
                                        position: points[1].positions["d"]!)) == digest(atTag1))
        #expect(digest(try restoredCopy(fixture: fixture, pairID: "d", target: target,
                                        position: points[0].positions["d"]!)) == digest(atTag2))
    }

    @Test func readTargetStopsAtItsEnd() throws {
        var rng = SplitMix(seed: 15)
        let fixture = try Fixture()
        let size = 3 * 65536 + 1000
        let (target, _, applier) = try fixture.openNewPair("d", size: size, rng: &rng)
        let bytes = try readFile(target)
        func read(_ offset: UInt64, _ count: Int, granule: Int = 4096) throws -> [UInt8] {
            var out: [UInt8] = []
            try applier.readTarget(offset: offset, count: count, granule: granule) { piece in
                #expect(piece.count % granule == 0 || out.count + piece.count == min(count, size - Int(offset)))
                out += piece
            }
            return out
        }
        #expect(try read(65536, 10 * 65536) == Array(bytes[65536...]))
        #expect(try read(100, 50) == Array(bytes[100..<150]))
        #expect(try read(UInt64(size), 10).isEmpty)
        #expect(try read(0, size, granule: 3 << 20) == bytes, "a granule above the read buffer's size")
    }

    @Test func largeAlignedWritesReachTheTarget() throws {
        // Contiguous aligned writes are gathered into direct writes; unaligned ones go between them.
        var rng = SplitMix(seed: 16)
        let fixture = try Fixture()
        let size = 24 << 20
        let (target, _, applier) = try fixture.openNewPair("d", size: size, rng: &rng)
        var expected = try readFile(target)
        var seq: UInt64 = 0
        func write(_ offset: Int, _ data: [UInt8]) {
            seq += 1
            #expect(applier.accept(.write(seq: seq, offset: UInt64(offset), data: data)) == .queued)
            expected.replaceSubrange(offset..<(offset + data.count), with: data)
        }
        for i in 0..<10 { write(i << 20, rng.bytes(1 << 20)) }
        write(3 << 20 + 100, rng.bytes(5000))
        write(3 << 20, rng.bytes(4 << 20))
        write(20 << 20, rng.bytes(4096))
        _ = try applier.commit()
        #expect(try readFile(target) == expected)
    }

    /// Old content of large aligned runs is read with O_DIRECT on the read-ahead thread, into the two
    /// halves of one buffer in turn; small and unaligned runs through the page cache. Every point
    /// restores what the source held at its tag, whichever way each record was read.
    @Test func undoOfLargeAndSmallWritesRestoresEveryPoint() throws {
        var rng = SplitMix(seed: 17)
        let fixture = try Fixture()
        let size = 16 << 20
        let (target, _, applier) = try fixture.openNewPair("d", size: size, rng: &rng)
        var driver = Driver(applier: applier, source: try readFile(target))
        try driver.resync()
        var snapshots: [UInt64: [UInt8]] = [:]
        for tag in UInt64(1)...4 {
            driver.write(Int(tag) << 20, rng.bytes(1 << 20))              // one direct piece
            driver.write(8 << 20, rng.bytes(3 << 20))                      // three, one after the other
            driver.write((9 << 20) + 4096, rng.bytes(64 << 10))            // inside the last: nothing new
            driver.write(13 << 20, rng.bytes(60 << 10))                    // below the direct minimum
            driver.write((14 << 20) + 100, rng.bytes(200_000))             // unaligned
            driver.write(size - (128 << 10), rng.bytes(128 << 10))         // at the end of the target
            driver.write(Int.random(in: 0..<((size >> 20) - 2), using: &rng) << 20, rng.bytes((2 << 20) - 8192))
            driver.tag(tag)
            snapshots[tag] = driver.source
            _ = try applier.commit()
        }
        #expect(try readFile(target) == driver.source)
        let points = try fixture.catalog.recoveryPoints(group: "g")
        #expect(points.map(\.tagID) == [4, 3, 2, 1])
        for point in points {
            #expect(digest(try restoredCopy(fixture: fixture, pairID: "d", target: target, position: point.positions["d"]!))
                    == digest(snapshots[point.tagID]), "point \(point.tagID)")
        }
    }
}
