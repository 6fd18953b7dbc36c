import Foundation
import MTAgentCore
import Testing

@Suite("Recovery rules: choosing and pruning points")
struct RecoveryRulesTests {
    static let s: UInt64 = 1_000_000_000
    static func point(_ id: Int64, _ kind: TagKind, at seconds: UInt64) -> PointSummary {
        PointSummary(id: id, tagID: UInt64(id) * 10, kind: kind, name: kind == .app ? "app\(id)" : "", sourceTime: seconds * s,
                     recordedAt: Date(timeIntervalSince1970: Double(seconds)))
    }
    let points = [point(1, .crash, at: 100), point(2, .app, at: 200), point(3, .crash, at: 300), point(4, .crash, at: 400)]

    @Test func selectorsParse() {
        #expect(PointSelector("latest") == .latest && PointSelector("latest-app") == .latestApp)
        #expect(PointSelector("42") == .id(42) && PointSelector("0") == nil && PointSelector("-3") == nil)
        #expect(PointSelector("@1795723200") == .time(1_795_723_200 * Self.s))
        #expect(PointSelector("2026-11-26T20:00:00Z") == .time(1_795_723_200 * Self.s))
        #expect(PointSelector("2026-11-26T20:00:00.250Z") == .time(1_795_723_200 * Self.s + 250_000_000))
        #expect(PointSelector("yesterday") == nil && PointSelector("") == nil)
    }

    @Test func selectionPicksTheRightPointOrSaysWhy() throws {
        #expect(try PointSelector.latest.select(from: points, group: "g").get().id == 4)
        #expect(try PointSelector.latestApp.select(from: points, group: "g").get().id == 2)
        #expect(try PointSelector.id(3).select(from: points, group: "g").get().id == 3)
        // A time picks the newest point taken at or before it.
        #expect(try PointSelector.time(300 * Self.s).select(from: points, group: "g").get().id == 3)
        #expect(try PointSelector.time(399 * Self.s).select(from: points, group: "g").get().id == 3)
        guard case .failure(let early) = PointSelector.time(99 * Self.s).select(from: points, group: "g") else {
            Issue.record("a time before the oldest point was accepted"); return
        }
        #expect("\(early)".contains("before the oldest recovery point of group g, 1 at 1970-01-01T00:01:40.000Z"))
        guard case .failure(let unknown) = PointSelector.id(9).select(from: points, group: "g") else { Issue.record("id 9"); return }
        #expect("\(unknown)".contains("has no recovery point 9; its points run from 1 to 4"))
        guard case .failure(.noAppPoint) = PointSelector.latestApp.select(from: [points[0]], group: "g") else { Issue.record("no app"); return }
        guard case .failure(.noPoints) = PointSelector.latest.select(from: [], group: "g") else { Issue.record("empty"); return }
    }

    @Test func expiredPointsAreThoseOlderThanTheWindowButNeverAGroupsNewest() {
        let ps = [
            PruningRules.Point(group: "a", tagID: 1, sourceTime: 100 * Self.s),
            PruningRules.Point(group: "a", tagID: 2, sourceTime: 200 * Self.s),
            PruningRules.Point(group: "a", tagID: 3, sourceTime: 300 * Self.s),
            PruningRules.Point(group: "b", tagID: 7, sourceTime: 50 * Self.s),  // b's only point: kept
        ]
        // now 400 s, window 150 s: the cutoff is 250 s.
        #expect(PruningRules.expired(ps, now: 400 * Self.s, windowNs: 150 * Self.s) == ["a": 2])
        // A point exactly at the cutoff stays.
        #expect(PruningRules.expired(ps, now: 350 * Self.s, windowNs: 150 * Self.s) == ["a": 1])
        #expect(PruningRules.expired(ps, now: 400 * Self.s, windowNs: 1000 * Self.s).isEmpty)
        // Everything expired: a's newest stays.
        #expect(PruningRules.expired(ps, now: 10_000 * Self.s, windowNs: Self.s) == ["a": 2])
    }

    @Test func spacePruningTakesTheOldestOfAllGroupsAndKeepsEachNewest() {
        var ps = [
            PruningRules.Point(group: "a", tagID: 5, sourceTime: 500),
            PruningRules.Point(group: "a", tagID: 6, sourceTime: 600),
            PruningRules.Point(group: "b", tagID: 1, sourceTime: 100),
            PruningRules.Point(group: "b", tagID: 2, sourceTime: 700),
        ]
        #expect(PruningRules.oldestRemovable(ps) == ps[2])
        ps.remove(at: 2)
        #expect(PruningRules.oldestRemovable(ps) == ps[0])
        ps.remove(at: 0)
        #expect(PruningRules.oldestRemovable(ps) == nil)
    }
}

@Suite("Point times")
struct PointTimeTests {
    /// The hand-written formatter against Foundation's, over leap years, month ends and centuries.
    @Test func formatMatchesFoundation() {
        let reference = ISO8601DateFormatter()
        reference.formatOptions = [.withInternetDateTime, .withFractionalSeconds]
        var rng = SystemRandomNumberGenerator()
        var samples: [UInt64] = [0, 951_782_400_000 * 1_000_000, 1_795_723_200_250 * 1_000_000, 4_107_542_399_999 * 1_000_000]
        for _ in 0..<2000 { samples.append(UInt64.random(in: 0...(4_102_444_800_000 * 1_000_000), using: &rng)) }
        for ns in samples {
            let expected = reference.string(from: Date(timeIntervalSince1970: Double(ns / 1_000_000) / 1000))
            #expect(PointSummary.format(ns) == expected, "\(ns)")
        }
    }
}

@Suite("rate meter")
struct RateMeterTests {
    @Test func averagesTheCompleteSecondsOfTheWindow() {
        var meter = RateMeter(window: 4)
        meter.add(1000, at: 100)
        meter.add(3000, at: 101)
        meter.add(500, at: 102)  // the current second: not counted yet
        #expect(meter.perSecond(at: 102) == 1000)  // (1000 + 3000) / 4
        #expect(meter.perSecond(at: 103) == 1125)  // (1000 + 3000 + 500) / 4
        #expect(meter.perSecond(at: 105) == 875)  // second 100 left the window
        #expect(meter.perSecond(at: 107) == 0)  // idle for a whole window
        meter.add(4000, at: 200)  // long idle: old buckets are gone
        #expect(meter.perSecond(at: 201) == 1000)
    }

    @Test func matchesASlowCountOnRandomTraffic() {
        var rng = SystemRandomNumberGenerator()
        var meter = RateMeter(window: 10)
        var log: [(Int64, Int)] = []
        var second: Int64 = 1_000
        for _ in 0..<2000 {
            second += Int64.random(in: 0...2, using: &rng)
            let bytes = Int.random(in: 0...1_000_000, using: &rng)
            meter.add(bytes, at: second)
            log.append((second, bytes))
            let now = second + Int64.random(in: 0...12, using: &rng)
            let expected = log.filter { $0.0 < now && $0.0 >= now - 10 }.reduce(0) { $0 + $1.1 }
            #expect(meter.perSecond(at: now) == Double(expected) / 10)
        }
    }
}
