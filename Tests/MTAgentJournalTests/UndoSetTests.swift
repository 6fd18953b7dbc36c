import MTAgentCore
import Testing
@testable import MTAgentJournal

/// The undo set ("blocks already saved since the last tag") as ranges, and its bound.
@Suite("Undo set")
struct UndoSetTests {
    /// Random inserts against a set of block numbers (the structure it replaces): the same new
    /// blocks are reported, in order, and the ranges stay sorted, disjoint and non-adjacent.
    @Test(arguments: [UInt64(1), 2, 3, 4])
    func reportsExactlyTheBlocksNotSavedYet(seed: UInt64) {
        var rng = SplitMix(seed: seed)
        var set = UndoSet(maxRanges: 1 << 20)
        var model = Set<UInt64>()
        for _ in 0..<2000 {
            let start = UInt64.random(in: 0..<4000, using: &rng)
            let count = UInt64.random(in: 1...64, using: &rng)
            let (new, dropped) = set.insert(start..<(start + count))
            #expect(!dropped)
            let expected = (start..<(start + count)).filter { model.insert($0).inserted }
            #expect(new.flatMap { Array($0) } == expected)
            #expect(new.allSatisfy { !$0.isEmpty })
            for (a, b) in zip(set.ranges, set.ranges.dropFirst()) {
                #expect(a.upperBound < b.lowerBound, "ranges must be sorted, disjoint and not touching")
            }
        }
        for block in 0..<UInt64(4100) { #expect(set.contains(block) == model.contains(block)) }
    }

    /// A sequential resync is one range, whatever the disk's size: 2 TiB of 1 MiB writes.
    @Test func aSequentialResyncIsOneRange() {
        var set = UndoSet(maxRanges: 4)
        let blocksPerWrite: UInt64 = 256
        var block: UInt64 = 0
        while block < (2 << 40) / 4096 {
            let (new, dropped) = set.insert(block..<(block + blocksPerWrite))
            #expect(new == [block..<(block + blocksPerWrite)] && !dropped)
            block += blocksPerWrite
        }
        #expect(set.ranges == [0..<((2 << 40) / 4096)])
        #expect(set.bytes < 1024)
    }

    /// Past `maxRanges` the set is emptied (and says so); what was new is still reported.
    @Test func beyondItsBoundTheSetIsEmptied() {
        var set = UndoSet(maxRanges: 3)
        for i in 0..<UInt64(3) { #expect(set.insert((i * 10)..<(i * 10 + 1)).dropped == false) }
        let (new, dropped) = set.insert(100..<101)
        #expect(dropped && new == [100..<101])
        #expect(set.ranges.isEmpty)
        #expect(set.insert(0..<1).new == [0..<1], "after the drop a block is saved again")
    }

    /// DESIGN §7: losing the set costs space, not correctness. With a bound of 2 ranges the set is
    /// emptied over and over, blocks are saved more than once per interval, and every point still
    /// restores exactly (restore applies records newest first).
    @Test(arguments: [UInt64(5), 6])
    func aTinyBoundCostsJournalSpaceOnly(seed: UInt64) throws {
        var journalBytes: [Int: Int] = [:]
        for maxRanges in [UndoSet.defaultMaxRanges, 2] {
            var rng = SplitMix(seed: seed)
            let fixture = try Fixture()
            let size = 256 * 1024
            let target = try fixture.makeTarget("disk0", size: size, rng: &rng)
            let pair = try fixture.catalog.registerPair(id: "disk0", group: "g", target: target, sourceSize: UInt64(size))
            let applier = try fixture.open(pair)
            applier.undoSetMaxRanges = maxRanges
            var driver = Driver(applier: applier, source: try readFile(target))
            try driver.resync()
            var snapshots: [(JournalPosition, [UInt8])] = []
            for tag in 1...UInt64(6) {
                for _ in 0..<30 {
                    // Scattered writes that rewrite the same blocks within the interval.
                    let length = Int.random(in: 1...9000, using: &rng)
                    let offset = Int.random(in: 0...(size - length), using: &rng) / 64 * 64
                    driver.write(offset, rng.bytes(min(length, size - offset)))
                    if Bool.random(using: &rng) { _ = try applier.commit() }
                }
                driver.tag(tag)
                let outcome = try applier.commit()
                snapshots.append((try #require(outcome.tags.first?.position), driver.source))
            }
            if maxRanges == 2 { #expect(applier.undoSetDrops > 0, "the bound must have been reached") }
            applier.close()
            for (index, (position, content)) in snapshots.enumerated() {
                let restored = try restoredCopy(fixture: fixture, pairID: "disk0", target: target, position: position)
                #expect(digest(restored) == digest(content), "point \(index + 1) with maxRanges \(maxRanges)")
            }
            journalBytes[maxRanges] = try records(fixture.journal("disk0")).filter { $0.type == .undo }.reduce(0) { $0 + $1.payload.count }
        }
        #expect(journalBytes[2]! > journalBytes[UndoSet.defaultMaxRanges]!, "dropping the set costs journal space: \(journalBytes)")
    }
}
