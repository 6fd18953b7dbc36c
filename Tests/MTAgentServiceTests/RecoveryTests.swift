import Foundation
import Logging
import MTAgentCore
import Testing
@testable import MTAgentJournal
@testable import MTAgentService

/// A group of two pairs replicated with a random workload and common tags, the sources' content
/// recorded at every tag; a retention directory, real catalog and journals, file targets.
final class GroupLab {
    let directory: String
    let layout: RetentionLayout
    let catalog: Catalog
    var pairs: [PairInfo] = []
    var appliers: [PairApplier] = []
    var sources: [[UInt8]] = []
    var seqs: [UInt64] = []
    /// tagID → each pair's source content at the tag.
    var snapshots: [UInt64: [[UInt8]]] = [:]
    var rng: SplitMix
    let size: Int

    init(seed: UInt64, size: Int = 512 << 10, pairCount: Int = 2) throws {
        var template = Array((FileManager.default.temporaryDirectory.path + "/mtrec-XXXXXX").utf8CString)
        guard let made = mkdtemp(&template) else { throw RecoveryRefusal("mkdtemp failed") }
        directory = String(cString: made)
        layout = RetentionLayout(retention: directory)
        catalog = try Catalog(path: layout.catalog)
        rng = SplitMix(seed: seed)
        self.size = size
        for i in 1...pairCount {
            let target = directory + "/target\(i).img"
            let content = rng.bytes(size)
            try Data(content).write(to: URL(fileURLWithPath: target))
            try catalog.assign(target: target, group: "g")
            let pair = try catalog.registerPair(id: "p\(i)", group: "g", target: target, sourceSize: UInt64(size))
            let applier = try PairApplier.open(pair: pair, targetPath: target, admitted: nil, journalRoot: layout.journalRoot, catalog: catalog,
                                               logger: quiet, segmentLimit: 128 << 10)
            pairs.append(pair); appliers.append(applier); sources.append(content); seqs.append(0)
            // Resync: the target already equals the source.
            for op in [PairOp.resyncBegin(seq: 1), .resyncDone(seq: 2)] { _ = applier.accept(op) }
            seqs[i - 1] = 2
            _ = try applier.commit()
        }
    }

    deinit {
        for a in appliers { a.close() }
        try? FileManager.default.removeItem(atPath: directory)
    }

    func write(pair i: Int) {
        let length = Int.random(in: 1...30_000, using: &rng)
        let offset = Int.random(in: 0...(size - length), using: &rng)
        let data = rng.bytes(length)
        seqs[i] += 1
        sources[i].replaceSubrange(offset..<(offset + length), with: data)
        _ = appliers[i].accept(.write(seq: seqs[i], offset: UInt64(offset), data: data))
    }

    /// Writes on both pairs, then the same tag on both; commits in random places.
    func interval(tag: UInt64, kind: TagKind, sourceTime: UInt64) throws {
        for i in pairs.indices {
            for _ in 0..<Int.random(in: 1...6, using: &rng) {
                write(pair: i)
                if Bool.random(using: &rng) { _ = try appliers[i].commit() }
            }
            seqs[i] += 1
            _ = appliers[i].accept(.tag(seq: seqs[i], tagID: tag, kind: kind, name: kind == .app ? "app-\(tag)" : "", sourceTime: sourceTime))
            _ = try appliers[i].commit()
        }
        snapshots[tag] = sources
    }

    /// The service stops a group's appliers before rolling back; so does the lab.
    func stopIngest() {
        for a in appliers { a.close() }
    }

    func recovery() -> Recovery {
        Recovery(catalog: catalog, layout: layout, logger: quiet) { try admittedFile($0.target) }
    }

    func targets() throws -> [[UInt8]] {
        try pairs.map { [UInt8](try Data(contentsOf: URL(fileURLWithPath: $0.target))) }
    }
}

let quiet = Logger(label: "mt-agent.recovery.tests", factory: { _ in SwiftLogNoOpLogHandler() })

struct SplitMix: RandomNumberGenerator {
    var state: UInt64
    init(seed: UInt64) { state = seed }
    mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }
    mutating func bytes(_ count: Int) -> [UInt8] { (0..<count).map { _ in UInt8.random(in: 0...255, using: &self) } }
}

@Suite("Recovery: points, failover, change of point, commit")
struct RecoveryTests {
    static let base: UInt64 = 1_795_700_000_000_000_000

    /// 10 intervals, every third tag app-consistent, then writes after the last tag.
    static func lab(seed: UInt64) throws -> GroupLab {
        let lab = try GroupLab(seed: seed)
        for t in 1...10 as ClosedRange<UInt64> {
            try lab.interval(tag: t, kind: t % 3 == 0 ? .app : .crash, sourceTime: base + t * 1_000_000_000)
        }
        for i in lab.pairs.indices { lab.write(pair: i); _ = try lab.appliers[i].commit() }
        lab.stopIngest()
        return lab
    }

    @Test(arguments: [UInt64(21), 22])
    func everyPointOfTheGroupIsExactInAnyOrderThenCommit(seed: UInt64) throws {
        let lab = try Self.lab(seed: seed)
        let recovery = lab.recovery()
        let listed = try recovery.points(group: "g")
        #expect(listed.count == 1 && listed[0].pairs == ["p1", "p2"])
        let points = listed[0].points
        #expect(points.map(\.point.tagID) == Array((1...10 as ClosedRange<UInt64>).reversed()))
        #expect(points.first?.latest == true && points.first(where: \.latestApp)?.point.tagID == 9)

        var rng = SplitMix(seed: seed)
        var order = points.map(\.point.id)
        order.shuffle(using: &rng)
        for id in order + [order[0]] {
            let plan = try recovery.prepareFailover(group: "g", selector: .id(id), force: false)
            _ = try recovery.execute(plan)
            let tag = plan.point.tagID
            #expect(try lab.targets() == lab.snapshots[tag]!, "point with tag \(tag)")
            #expect(try lab.catalog.failover(group: "g")?.status == .atPoint)
        }
        // latest-app and a time between two points.
        _ = try recovery.execute(try recovery.prepareFailover(group: "g", selector: .latestApp, force: false))
        #expect(try lab.targets() == lab.snapshots[9]!)
        let between = Self.base + 4 * 1_000_000_000 + 500_000_000
        let plan = try recovery.prepareFailover(group: "g", selector: .time(between), force: false)
        #expect(plan.point.tagID == 4)
        _ = try recovery.execute(plan)
        #expect(try lab.targets() == lab.snapshots[4]!)

        let report = try recovery.commit(group: "g")
        #expect(report.pairs == ["p1", "p2"] && report.journalBytesFreed > 0 && report.targets.count == 2)
        #expect(try lab.targets() == lab.snapshots[4]!, "commit leaves the targets at the point")
        #expect(!FileManager.default.fileExists(atPath: lab.layout.journal("p1")))
        #expect(!FileManager.default.fileExists(atPath: lab.layout.saved("p2")))
        #expect(try lab.catalog.groups().isEmpty && lab.catalog.pairs().isEmpty && lab.catalog.recoveryPoints(group: nil).isEmpty)
        #expect(try lab.catalog.assignments().isEmpty)
    }

    @Test func aFailoverStoppedHalfWayIsFinishedOnRestartOrByTheNextFailover() throws {
        let lab = try Self.lab(seed: 31)
        let recovery = lab.recovery()
        for (stopAt, thenPoint) in [(3, nil), (40, UInt64(7)), (1, nil), (25, UInt64(10))] as [(Int, UInt64?)] {
            let plan = try recovery.prepareFailover(group: "g", selector: .time(Self.base + 2 * 1_000_000_000), force: false)
            var calls = 0
            #expect(throws: Stop.self) {
                _ = try recovery.execute(plan) { _ in
                    calls += 1
                    if calls >= stopAt { throw Stop() }
                }
            }
            #expect(try lab.catalog.failover(group: "g")?.status == .rollingBack)
            #expect(throws: RecoveryRefusal.self) { _ = try recovery.commit(group: "g") }
            if let thenPoint {
                // The operator picks another point: the next failover goes straight there.
                let other = try recovery.prepareFailover(group: "g", selector: .time(Self.base + thenPoint * 1_000_000_000), force: false)
                _ = try recovery.execute(other)
                #expect(try lab.targets() == lab.snapshots[thenPoint]!)
            } else {
                // What the service does at start.
                #expect(try recovery.finishInterrupted() == ["g"])
                #expect(try lab.targets() == lab.snapshots[2]!)
            }
        }
        _ = try recovery.commit(group: "g")
    }

    @Test func aGroupThatCannotBeFinishedNowIsLeftFailedOverWithoutStoppingTheRest() throws {
        let lab = try Self.lab(seed: 35)
        // Recorded, then killed before any target moved.
        _ = try lab.recovery().prepareFailover(group: "g", selector: .latest, force: false)
        // Its target is gone at the next start.
        let blind = Recovery(catalog: lab.catalog, layout: lab.layout, logger: quiet) { pair in
            throw RecoveryRefusal("target \(pair.target) cannot be resolved")
        }
        #expect(try blind.finishInterrupted() == [])
        #expect(try lab.catalog.failover(group: "g")?.status == .rollingBack)
        // Once the target is back, it is finished.
        #expect(try lab.recovery().finishInterrupted() == ["g"])
        #expect(try lab.targets() == lab.snapshots[10]!)
    }

    @Test func anInterruptedCommitIsFinished() throws {
        let lab = try Self.lab(seed: 41)
        let recovery = lab.recovery()
        _ = try recovery.execute(try recovery.prepareFailover(group: "g", selector: .latest, force: false))
        // Killed after marking the commit and removing one journal.
        let pointID = try lab.catalog.failover(group: "g")!.pointID
        try lab.catalog.setFailover(group: "g", pointID: pointID, status: .committing)
        try FileManager.default.removeItem(atPath: lab.layout.journal("p1"))
        #expect(throws: RecoveryRefusal.self) { _ = try recovery.prepareFailover(group: "g", selector: .latest, force: false) }
        #expect(try recovery.finishInterrupted() == ["g"])
        #expect(try lab.catalog.groups().isEmpty)
        #expect(!FileManager.default.fileExists(atPath: lab.layout.journal("p2")))
        #expect(try lab.targets() == lab.snapshots[10]!)
    }

    @Test func badRequestsAreRefusedWithTheReasonAndChangeNothing() throws {
        let lab = try Self.lab(seed: 51)
        let recovery = lab.recovery()
        let before = try lab.targets()
        func refusal(_ body: () throws -> Void) -> String {
            do { try body() } catch { return "\(error)" }
            return "no error"
        }
        #expect(refusal { _ = try recovery.prepareFailover(group: "nope", selector: .latest, force: false) }
            .contains("no group nope on this master target (groups: g)"))
        #expect(refusal { _ = try recovery.prepareFailover(group: "g", selector: .id(999), force: false) }
            .contains("has no recovery point 999"))
        let early = refusal { _ = try recovery.prepareFailover(group: "g", selector: .time(Self.base), force: false) }
        #expect(early.contains("before the oldest recovery point of group g") && early.contains(PointSummary.format(Self.base + 1_000_000_000)))
        #expect(refusal { _ = try recovery.commit(group: "g") }.contains("is not failed over"))
        #expect(refusal { _ = try recovery.points(group: "nope") }.contains("no group nope"))
        #expect(try lab.catalog.failover(group: "g") == nil)
        #expect(try lab.targets() == before)
    }

    @Test func aGroupWithAResyncingPairIsRefusedUnlessForced() throws {
        let lab = try Self.lab(seed: 61)
        // p2 starts a resync (a gap, a new source disk…) and is half-way.
        let applier = try PairApplier.open(pair: lab.pairs[1], targetPath: lab.pairs[1].target, admitted: nil, journalRoot: lab.layout.journalRoot,
                                           catalog: lab.catalog, logger: quiet, segmentLimit: 128 << 10)
        let seq = applier.durableSeq
        _ = applier.accept(.resyncBegin(seq: seq + 1))
        _ = applier.accept(.resyncMark(seq: seq + 2, through: UInt64(lab.size / 2)))
        _ = try applier.commit()
        applier.close()
        let recovery = lab.recovery()
        do {
            _ = try recovery.prepareFailover(group: "g", selector: .latest, force: false)
            Issue.record("a failover during a resync was accepted")
        } catch {
            #expect("\(error)".contains("pair p2 of group g is resyncing (50 % done)"))
        }
        #expect(try lab.catalog.failover(group: "g") == nil)
        // Forced: points from before the resync stay exact (its data was journaled).
        _ = try recovery.execute(try recovery.prepareFailover(group: "g", selector: .id(try recovery.points(group: "g")[0].points[2].point.id), force: true))
        #expect(try lab.targets() == lab.snapshots[8]!)
    }

    /// Numbers from the catalog are hostile too: a resyncing pair whose resync offset is absurd (a
    /// damaged or edited catalog) is reported, never trapped on.
    @Test func anAbsurdResyncOffsetInTheCatalogIsReportedNotTrappedOn() throws {
        let lab = try Self.lab(seed: 62)
        let commit = CommitRecord(durableSeq: 1000, state: .resyncing, resyncOffset: .max - 5, hasBaseline: true, reason: "")
        _ = try lab.catalog.record(.init(pairID: "p2", commit: commit), tags: [])
        do {
            _ = try lab.recovery().prepareFailover(group: "g", selector: .latest, force: false)
            Issue.record("a failover during a resync was accepted")
        } catch {
            #expect("\(error)".contains("pair p2 of group g is resyncing (100 % done)"), "\(error)")
        }
    }

    struct Stop: Error {}
}

@Suite("Pruning: the retention window and the space policy")
struct PruningTests {
    static let base = RecoveryTests.base
    static let second: UInt64 = 1_000_000_000

    /// Tags 1…10 one second apart on the source; small segments so pruning can free whole ones.
    static func lab(seed: UInt64) throws -> GroupLab {
        let lab = try GroupLab(seed: seed)
        for t in 1...10 as ClosedRange<UInt64> {
            try lab.interval(tag: t, kind: t % 3 == 0 ? .app : .crash, sourceTime: base + t * second)
        }
        return lab
    }

    @Test func theWindowIsKeptExactlyAndWhatIsLeftStillRestores() throws {
        let lab = try Self.lab(seed: 71)
        let recovery = lab.recovery()
        let segmentsBefore = try FileManager.default.contentsOfDirectory(atPath: lab.layout.journal("p1")).count
        // now = tag 10 + 0.5 s, window 4 s: points at 6.5 s and later stay → tags 7…10.
        let report = try recovery.prune(now: Self.base + 10 * Self.second + Self.second / 2, windowNs: 4 * Self.second,
                                        pruneForSpace: true, reserve: 0) { 1 << 40 }
        #expect(report.steps.map(\.throughTagID) == [6] && report.steps[0].points == 6)
        #expect(try lab.catalog.recoveryPoints(group: "g").map(\.tagID).sorted() == [7, 8, 9, 10])
        #expect(report.segmentsRemoved > 0 && report.bytesFreed > 0)
        let segmentsAfter = try FileManager.default.contentsOfDirectory(atPath: lab.layout.journal("p1")).count
        #expect(segmentsAfter < segmentsBefore)
        // Pruned tags do not come back when a pair is reopened (its journal still has some TAG records).
        for a in lab.appliers { a.close() }
        let reopened = try PairApplier.open(pair: lab.pairs[0], targetPath: lab.pairs[0].target, admitted: nil, journalRoot: lab.layout.journalRoot,
                                            catalog: lab.catalog, logger: quiet, segmentLimit: 128 << 10)
        reopened.close()
        #expect(try lab.catalog.recoveryPoints(group: "g").map(\.tagID).sorted() == [7, 8, 9, 10])
        // The oldest kept point is still exact.
        lab.stopIngest()
        for tag in [7, 10, 8] as [UInt64] {
            _ = try recovery.execute(try recovery.prepareFailover(group: "g", selector: .time(Self.base + tag * Self.second), force: false))
            #expect(try lab.targets() == lab.snapshots[tag]!, "tag \(tag) after pruning")
        }
        // A failed-over group is never pruned.
        let frozen = try recovery.prune(now: .max / 2, windowNs: 1, pruneForSpace: true, reserve: 0) { 1 << 40 }
        #expect(frozen.steps.isEmpty && frozen.segmentsRemoved == 0)
    }

    @Test func shortOfSpaceThePolicyPrunesTheOldestLoudlyUntilTheReserveIsFree() throws {
        let lab = try Self.lab(seed: 72)
        let recovery = lab.recovery()
        // A volume that gains what pruning frees from the journals, short of the reserve by 40 %
        // of what they hold now.
        func journalBytes() throws -> UInt64 {
            try (1...2).reduce(UInt64(0)) { sum, i in
                try FileManager.default.contentsOfDirectory(atPath: lab.layout.journal(try Identifier(validating: "p\(i)"))).reduce(sum) { s, name in
                    s + ((try FileManager.default.attributesOfItem(atPath: lab.layout.journal(try Identifier(validating: "p\(i)")) + "/" + name)[.size] as? UInt64) ?? 0)
                }
            }
        }
        let initial = try journalBytes()
        let reserve: UInt64 = 1 << 30
        let start = reserve - initial * 4 / 10
        let report = try recovery.prune(now: Self.base + 11 * Self.second, windowNs: 3600 * Self.second, pruneForSpace: true, reserve: reserve) {
            start + (initial - (try journalBytes()))
        }
        #expect(report.steps.allSatisfy(\.forSpace) && !report.steps.isEmpty && !report.stillShort)
        let left = try journalBytes()
        #expect(start + report.bytesFreed >= reserve && report.bytesFreed == initial - left)
        let kept = try lab.catalog.recoveryPoints(group: "g").map(\.tagID).sorted()
        #expect(kept.last == 10 && kept.count < 10)
        // The oldest went first: what is kept is a run ending at the newest.
        #expect(kept == Array(kept.first!...10))
        let listed = try recovery.points(group: "g")[0]
        #expect(listed.warnings.first?.contains("pruned before the retention window because the retention volume ran short of space") == true)
        lab.stopIngest()
        _ = try recovery.execute(try recovery.prepareFailover(group: "g", selector: .time(Self.base + kept[0] * Self.second), force: false))
        #expect(try lab.targets() == lab.snapshots[kept[0]]!)
    }

    @Test func withPolicyStopNothingIsPrunedForSpaceAndTheVolumeIsReportedShort() throws {
        let lab = try Self.lab(seed: 73)
        let report = try lab.recovery().prune(now: Self.base + 11 * Self.second, windowNs: 3600 * Self.second,
                                              pruneForSpace: false, reserve: 1 << 30) { 1 << 20 }
        #expect(report.stillShort && report.steps.isEmpty)
        #expect(try lab.catalog.recoveryPoints(group: "g").count == 10)
    }
}

/// A scratch file target as the target rules would admit it: its path and its inode, which the
/// rollback checks again on the descriptor it opens.
func admittedFile(_ path: String) throws -> AdmittedTarget {
    var st = stat()
    guard stat(path, &st) == 0 else { throw RecoveryRefusal("cannot stat \(path)") }
    return AdmittedTarget(path: path, node: .regularFile(device: UInt64(st.st_dev), inode: UInt64(st.st_ino)))
}
