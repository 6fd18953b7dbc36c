import Foundation
import Glibc
import MTAgentCore
import NIOConcurrencyHelpers
import Testing
@testable import MTAgentJournal
@testable import MTAgentService

/// What a catalog row or a target that changed under mt-agent can make recovery do: nothing
/// outside the pair's own directories, and no write to a node the target rules did not judge.
@Suite("Recovery: forged catalog rows and swapped targets")
struct ForgedCatalogTests {
    static func sqlite(_ database: String, _ sql: String) throws {
        let p = Process()
        p.executableURL = URL(fileURLWithPath: "/usr/bin/sqlite3")
        p.arguments = [database, sql]
        try p.run()
        p.waitUntilExit()
        guard p.terminationStatus == 0 else { throw RecoveryRefusal("sqlite3 \(sql) failed") }
    }

    static func failedOver(seed: UInt64) throws -> GroupLab {
        let lab = try RecoveryTests.lab(seed: seed)
        let recovery = lab.recovery()
        _ = try recovery.execute(try recovery.prepareFailover(group: "g", selector: .latest, force: false))
        return lab
    }

    @Test(arguments: ["..", "../..", "../../canary", "."])
    func aCommitOverAForgedPairRowIsRefusedAndDeletesNothing(_ forged: String) throws {
        let lab = try Self.failedOver(seed: 81)
        // The retention holds an unrelated directory next to mt-agent's; the lab's parent is outside.
        let canary = lab.directory + "/canary"
        try FileManager.default.createDirectory(atPath: canary, withIntermediateDirectories: true)
        try Data("unrelated".utf8).write(to: URL(fileURLWithPath: canary + "/file"))
        try Self.sqlite(lab.layout.catalog, """
            INSERT INTO pair (id, groupID, target, sourceSize, state, reason, hasBaseline, resyncOffset, durableSeq)
            VALUES ('\(forged)', 'g', '/nonexistent', 0, 'new', NULL, 0, 0, 0)
            """)
        #expect(try lab.catalog.pairs(group: "g").map(\.id).contains(forged))

        let recovery = lab.recovery()
        do {
            _ = try recovery.commit(group: "g")
            Issue.record("a commit over a pair named \(forged) went through")
        } catch let refusal as RecoveryRefusal {
            #expect(refusal.message.contains("not a valid name"), "\(refusal)")
        }
        #expect(try String(contentsOfFile: canary + "/file", encoding: .utf8) == "unrelated")
        #expect(FileManager.default.fileExists(atPath: lab.layout.catalog))
        for id in ["p1", "p2"] as [Identifier] {
            #expect(FileManager.default.fileExists(atPath: lab.layout.journal(id)))
            #expect(FileManager.default.fileExists(atPath: lab.layout.saved(id)))
        }
        #expect(try lab.catalog.groups() == ["g"])
    }

    @Test func anInterruptedFailoverToAPointMissingAPairsPositionIsReportedNotTrappedOn() throws {
        let lab = try Self.failedOver(seed: 84)
        let state = try #require(try lab.catalog.failover(group: "g"))
        // As if the service died mid-rollback, and the catalog then lost one pair's position of that point.
        try lab.catalog.setFailover(group: "g", pointID: state.pointID, status: .rollingBack)
        try Self.sqlite(lab.layout.catalog, "DELETE FROM recoveryPointPosition WHERE pointID = \(state.pointID) AND pairID = 'p2'")

        let finished = try lab.recovery().finishInterrupted()
        #expect(finished.isEmpty)
        // Left failed over (nothing replicates onto it), and still rolling back: the operator is told, not a crash.
        #expect(try lab.catalog.failover(group: "g")?.status == .rollingBack)
    }

    /// `status` and every metrics scrape read each pair's resync progress from the catalog when the
    /// pair is not open: a row with an absurd offset is reported, not trapped on.
    @Test func statusOverAnAbsurdResyncOffsetInTheCatalogDoesNotTrap() async throws {
        let lab = try RecoveryTests.lab(seed: 85)
        try Self.sqlite(lab.layout.catalog, "UPDATE pair SET state = 'resyncing', resyncOffset = -1 WHERE id = 'p2'")
        let reporter = StatusReporter(
            catalog: lab.catalog, layout: lab.layout, version: "test", started: .now,
            policy: LivePolicy(ServicePolicy(rpoThreshold: .seconds(900), retentionWindow: .seconds(86400),
                                             appConsistentFrequency: .seconds(3600), spacePolicy: .pruneOldest, logLevel: .info)),
            listening: NIOLockedValueBox(""), gate: SpaceGate(), openPairs: { [] })
        let status = try await reporter.report()
        let p2 = try #require(status.groups.flatMap(\.pairs).first { $0.pair == "p2" })
        #expect(p2.state == "resyncing" && p2.resyncPercent == 100, "\(p2)")
    }

    @Test func pruningSkipsAForgedPairRow() throws {
        let lab = try RecoveryTests.lab(seed: 82)
        // `<base>/journal/../..` is the retention directory: segment-like files there must survive.
        for n in 1...2 { try Data("unrelated".utf8).write(to: URL(fileURLWithPath: lab.directory + "/seg-0000000\(n).mtj")) }
        // A forged pair with a recovery-point position, so pruning would look at its "journal".
        try Self.sqlite(lab.layout.catalog, """
            INSERT INTO pair (id, groupID, target, sourceSize, state, reason, hasBaseline, resyncOffset, durableSeq)
            VALUES ('../..', 'g', '/nonexistent', 0, 'new', NULL, 0, 0, 0);
            INSERT INTO recoveryPointPosition (pointID, pairID, segment, byteOffset)
            SELECT pointID, '../..', segment + 5, byteOffset FROM recoveryPointPosition WHERE pairID = 'p1';
            """)
        let report = try lab.recovery().prune(now: RecoveryTests.base + 1_000 * 1_000_000_000, windowNs: 1, pruneForSpace: false,
                                              reserve: 0, freeBytes: { UInt64.max })
        #expect(report.steps.count == 1)
        for n in 1...2 {
            #expect(try String(contentsOfFile: lab.directory + "/seg-0000000\(n).mtj", encoding: .utf8) == "unrelated")
        }
    }

    @Test func aFailoverOntoATargetSwappedAfterItsCheckIsRefused() throws {
        let lab = try RecoveryTests.lab(seed: 83)
        let recovery = lab.recovery()
        let plan = try recovery.prepareFailover(group: "g", selector: .id(try #require(recovery.points(group: "g").first?.points.last?.point.id)),
                                                force: false)
        // Between the check and the rollback, another file takes the first target's path.
        let target = lab.pairs[0].target
        let other = lab.directory + "/other.img"
        let content = [UInt8](repeating: 0x5A, count: 512 << 10)
        try Data(content).write(to: URL(fileURLWithPath: other))
        #expect(rename(other, target) == 0)
        do {
            _ = try recovery.execute(plan)
            Issue.record("the rollback wrote to a swapped target")
        } catch let error as TargetOpenError {
            guard case .changed = error else { Issue.record("\(error)"); return }
        }
        #expect([UInt8](try Data(contentsOf: URL(fileURLWithPath: target))) == content)
    }
}
