import MTAgentCore
import Foundation
import Testing
@testable import MTAgentJournal

@Suite("catalog: pairs, assignments, recovery points", .tags(.medium))
struct CatalogTests {
    @Test func pointNeedsEveryInSyncPairOfTheGroup() throws {
        var rng = SplitMix(seed: 30)
        let fixture = try Fixture()
        var drivers: [String: Driver] = [:]
        for id in ["a", "b"] {
            let target = try fixture.makeTarget(id, size: 65536, rng: &rng)
            let pair = try fixture.catalog.registerPair(id: id, group: "g", target: target, sourceSize: 65536)
            var driver = Driver(applier: try fixture.open(pair), source: try readFile(target))
            try driver.resync()
            drivers[id] = driver
        }
        // A pair still in state new (and one of another group) must not hold the group's points back.
        let c = try fixture.makeTarget("c", size: 65536, rng: &rng)
        try fixture.catalog.registerPair(id: "c", group: "g", target: c, sourceSize: 65536)
        let x = try fixture.makeTarget("x", size: 65536, rng: &rng)
        try fixture.catalog.registerPair(id: "x", group: "other", target: x, sourceSize: 65536)

        drivers["a"]!.tag(7, kind: .app)
        let first = try drivers["a"]!.applier.commit()
        #expect(first.tags.map(\.recoveryPointComplete) == [false])
        #expect(try fixture.catalog.recoveryPoints(group: "g").isEmpty)

        drivers["b"]!.tag(7, kind: .app)
        let second = try drivers["b"]!.applier.commit()
        #expect(second.tags.map(\.recoveryPointComplete) == [true])
        let points = try fixture.catalog.recoveryPoints(group: "g")
        #expect(points.count == 1)
        let point = try #require(points.first)
        #expect(point.tagID == 7 && point.kind == .app && point.name == "tag-7" && point.sourceTime == 7000)
        #expect(point.positions["a"] == first.tags.first?.position)
        #expect(point.positions["b"] == second.tags.first?.position)
        #expect(try fixture.catalog.recoveryPoints(group: "other").isEmpty)

        // Reopening re-applies the durable tags to the catalog: no duplicate point.
        drivers["a"]!.applier.close()
        let reopened = try fixture.open(try #require(try fixture.catalog.pair(id: "a")))
        #expect(reopened.durableSeq == drivers["a"]!.seq)
        #expect(try fixture.catalog.recoveryPoints(group: nil).count == 1)
    }

    /// A crash between the journal COMMIT and the catalog write is repaired by open().
    @Test func openRepairsTheCatalog() throws {
        var rng = SplitMix(seed: 31)
        let fixture = try Fixture()
        let (target, pair, applier) = try fixture.openNewPair("d", size: 65536, rng: &rng)
        var driver = Driver(applier: applier, source: try readFile(target))
        try driver.resync()
        driver.tag(1)
        _ = try applier.commit()
        applier.close()

        // A fresh catalog stands in for one that missed the last updates.
        let other = try Catalog(path: fixture.directory + "/other.sqlite")
        try other.registerPair(id: "d", group: "g", target: target, sourceSize: 65536)
        _ = try PairApplier.open(pair: pair, targetPath: target, admitted: nil, journalRoot: fixture.journalRoot, catalog: other,
                                 logger: quietLogger)
        #expect(try other.pair(id: "d")?.state == .inSync)
        #expect(try other.pair(id: "d")?.hasBaseline == true)
        #expect(try other.recoveryPoints(group: "g").map(\.tagID) == [1])
    }

    @Test func registerPairRefusals() throws {
        let fixture = try Fixture()
        let first = try fixture.catalog.registerPair(id: "p", group: "g", target: "/dev/loop0", sourceSize: 10)
        #expect(try fixture.catalog.registerPair(id: "p", group: "g", target: "/dev/loop0", sourceSize: 10) == first)
        #expect(throws: CatalogError.pairConflict(id: "p", registeredGroup: "g", registeredTarget: "/dev/loop0",
                                                  group: "g", target: "/dev/loop1")) {
            try fixture.catalog.registerPair(id: "p", group: "g", target: "/dev/loop1", sourceSize: 10)
        }
        #expect(throws: CatalogError.pairConflict(id: "p", registeredGroup: "g", registeredTarget: "/dev/loop0",
                                                  group: "h", target: "/dev/loop0")) {
            try fixture.catalog.registerPair(id: "p", group: "h", target: "/dev/loop0", sourceSize: 10)
        }
        #expect(throws: CatalogError.targetInUse(target: "/dev/loop0", pair: "p")) {
            try fixture.catalog.registerPair(id: "q", group: "g", target: "/dev/loop0", sourceSize: 10)
        }
        #expect(try fixture.catalog.pairs().map(\.id) == ["p"])
    }

    @Test func assignments() throws {
        let fixture = try Fixture()
        try fixture.catalog.assign(target: "36000c29aaaa", group: "g1")
        try fixture.catalog.assign(target: "/dev/loop3", group: "g2")
        try fixture.catalog.assign(target: "36000c29aaaa", group: "g3")
        #expect(try fixture.catalog.assignments().map { [$0.target, $0.group] } == [["/dev/loop3", "g2"], ["36000c29aaaa", "g3"]])
        try fixture.catalog.unassign(target: "/dev/loop3")
        #expect(throws: CatalogError.notAssigned("/dev/loop3")) { try fixture.catalog.unassign(target: "/dev/loop3") }
        #expect(try fixture.catalog.assignments().map(\.target) == ["36000c29aaaa"])
    }

    @Test func openRefusesAnUnregisteredPair() throws {
        var rng = SplitMix(seed: 32)
        let fixture = try Fixture()
        let target = try fixture.makeTarget("d", size: 4096, rng: &rng)
        let pair = PairInfo(id: "d", group: "g", target: target, sourceSize: 4096)
        #expect(throws: JournalError.unregisteredPair("d")) { try fixture.open(pair) }
    }
}
