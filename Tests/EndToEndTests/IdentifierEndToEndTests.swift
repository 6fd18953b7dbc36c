import Foundation
import Glibc
import Logging
import MTAgentReplication
import MTAgentSetup
import Testing

/// Pair and group ids are names, never paths (docs/PROTOCOL.md §4, docs/JOURNAL.md "Layout"): the
/// built `serve`, driven by a sender that does not check its own ids, refuses them before anything is
/// created; a forged catalog row cannot make `commit` delete outside a pair's directories; a regular
/// file or /etc/shadow is no target.
@Suite("End to end: ids are names, targets are disks", .serialized)
struct IdentifierEndToEndTests {
    static let mib = 1 << 20

    /// Unrelated files where each bad id would have led: next to the retention's mt-agent directory,
    /// and outside the retention volume (where `journal/../../../canary` points).
    struct Canaries {
        let paths: [String]

        init(_ lab: LabMaster) throws {
            let inside = lab.retention.mountPoint + "/canary"
            let outside = URL(fileURLWithPath: lab.journalRoot + "/../../../canary").standardized.path
            #expect(!outside.hasPrefix(lab.retention.mountPoint + "/"))
            for dir in [inside, outside] {
                try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
                try "unrelated \(dir)\n".write(toFile: dir + "/file", atomically: false, encoding: .utf8)
            }
            paths = [inside, outside]
        }

        func expectIntact(_ when: String) {
            for dir in paths {
                #expect((try? FileManager.default.contentsOfDirectory(atPath: dir)) == ["file"], "\(dir) after \(when)")
                #expect((try? String(contentsOfFile: dir + "/file", encoding: .utf8)) == "unrelated \(dir)\n", "\(dir)/file after \(when)")
            }
        }
    }

    /// Opens one pair as a sender would, with whatever ids it is given; the refusal, or nil if it opened.
    static func open(_ lab: LabMaster, pair: String, group: String, target: String, size: UInt64) async throws -> SenderError? {
        let passphrase = Array("correct horse battery staple".utf8)
        let config = SenderConfiguration(host: "127.0.0.1", port: lab.port,
                                         fingerprint: lab.fingerprint.replacingOccurrences(of: ":", with: "").lowercased(), senderName: "hostile-e2e") { salt, n, r, p in
            try PassphraseKey.derive(passphrase: passphrase, salt: salt, params: KDFParameters(n: Int(n), r: Int(r), p: Int(p))).keyBytes
        }
        let session = SenderSession(configuration: config, pairs: [PairSpec(pairID: pair, group: group, target: target, sourceSize: size)],
                                    logger: Logger(label: "e2e", factory: { _ in SwiftLogNoOpLogHandler() }))
        let refusal: SenderError?
        do {
            try await session.connect(retryFor: .seconds(5))
            refusal = nil
        } catch let error as SenderError {
            refusal = error
        }
        await session.close()
        return refusal
    }

    static func pairCount(_ lab: LabMaster) throws -> String {
        let p = Process()
        p.executableURL = URL(fileURLWithPath: "/usr/bin/sqlite3")
        p.arguments = [lab.catalogPath, "SELECT count(*) FROM pair"]
        let out = Pipe()
        p.standardOutput = out
        try p.run()
        let data = out.fileHandleForReading.readDataToEndOfFile()
        p.waitUntilExit()
        return String(decoding: data, as: UTF8.self).trimmingCharacters(in: .whitespacesAndNewlines)
    }

    @Test func badIDsAreRefusedOnTheWireAndALegitimatePairSyncsFailsOverAndCommitsAroundTheCanaries() async throws {
        let lab = try LabMaster()
        defer { lab.remove() }
        let size = 4 * Self.mib
        let target = try lab.target(bytes: UInt64(size))
        let canaries = try Canaries(lab)
        try lab.start()

        for (pair, group) in [("../../../canary", "g1"), ("..", "g1"), (".", "g1"), ("a/b", "g1"), ("", "g1"), ("p1", "../g1")] {
            let refusal = try await Self.open(lab, pair: pair, group: group, target: target, size: UInt64(size))
            guard case .pairRefused(_, let code, let message)? = refusal else {
                Issue.record("OPEN_PAIR \(pair.debugDescription) in group \(group.debugDescription) was not refused: \(String(describing: refusal))")
                continue
            }
            #expect(code == .badRequest, "\(pair.debugDescription): \(code) \(message)")
            #expect(message.contains("[A-Za-z0-9][A-Za-z0-9._-]{0,63}"), "\(message)")
        }
        canaries.expectIntact("the bad OPEN_PAIRs")
        #expect(((try? FileManager.default.contentsOfDirectory(atPath: lab.journalRoot)) ?? []).isEmpty)
        #expect(try Self.pairCount(lab) == "0")
        #expect(lab.log.contains("bad id"))

        // The CLI sender refuses a bad id itself, with one line.
        let cli = try mtAgent(lab.sendArguments("resync", source: "/dev/null", pair: "../x", target: target))
        #expect(cli.status == 2 && cli.stderr.split(separator: "\n").count == 1 && cli.stderr.contains("--pair"), "\(cli.stderr)")

        // A legitimate pair: sync, points, failover, commit.
        var rng = SeededBytes(state: 91)
        let initial = rng.bytes(size)
        let source = lab.directory.path + "/source.img"
        try Data(initial).write(to: URL(fileURLWithPath: source))
        let resync = try mtAgent(lab.sendArguments("resync", source: source, pair: "p1", target: target))
        #expect(resync.status == 0, "\(resync.stderr)")
        let trace = TaggedTrace(initial: initial, writes: 120, every: 40, appEvery: 3, lengths: [4096, 30_000], seed: 92)
        try trace.write(to: lab.directory.path + "/writes.trace")
        let replay = try mtAgent(lab.sendArguments("replay", source: source, pair: "p1", target: target) + [lab.directory.path + "/writes.trace"])
        #expect(replay.status == 0, "\(replay.stderr)")
        let points = try RecoveryEndToEndTests.points(lab)
        #expect(points.count == 3)
        canaries.expectIntact("sync")
        let oldest = try #require(points.last)
        let failover = try mtAgent(["failover", "--group", "g1", "--point", "\(oldest.id)", "--yes", "--config", lab.config])
        #expect(failover.status == 0, "\(failover.stderr)")
        #expect(try sha256(target) == trace.expected[oldest.name])
        canaries.expectIntact("failover")
        let commit = try mtAgent(["commit", "--group", "g1", "--config", lab.config])
        #expect(commit.status == 0, "\(commit.stderr)")
        #expect(!FileManager.default.fileExists(atPath: lab.journalRoot + "/p1"))
        #expect(FileManager.default.fileExists(atPath: lab.catalogPath))
        canaries.expectIntact("commit")
        #expect(lab.stop() == 0)
    }

    @Test func aCommitOverAForgedCatalogRowIsRefusedAndDeletesNothing() throws {
        let lab = try LabMaster()
        defer { lab.remove() }
        let (target, _, trace) = try RecoveryEndToEndTests.replicated(lab, size: 4 * Self.mib, writes: 80, lengths: [4096], seed: 93)
        let canaries = try Canaries(lab)
        let point = try #require(try RecoveryEndToEndTests.points(lab).last)
        let failover = try mtAgent(["failover", "--group", "g1", "--point", "\(point.id)", "--yes", "--config", lab.config])
        #expect(failover.status == 0, "\(failover.stderr)")
        #expect(try sha256(target) == trace.expected[point.name])
        // Someone with write access to the catalog adds a pair to the group whose journal directory
        // `journal/../../canary` is the canary next to the retention's mt-agent directory.
        #expect(lab.stop() == 0)
        let p = Process()
        p.executableURL = URL(fileURLWithPath: "/usr/bin/sqlite3")
        p.arguments = [lab.catalogPath, """
            INSERT INTO pair (id, groupID, target, sourceSize, state, reason, hasBaseline, resyncOffset, durableSeq)
            VALUES ('../../canary', 'g1', '/nonexistent', 0, 'new', NULL, 0, 0, 0)
            """]
        try p.run()
        p.waitUntilExit()
        #expect(p.terminationStatus == 0)
        try lab.start()

        let commit = try mtAgent(["commit", "--group", "g1", "--config", lab.config])
        #expect(commit.status != 0, "the commit went through: \(commit.stdout)")
        #expect(commit.stderr.contains("not a valid name"), "\(commit.stderr)")
        canaries.expectIntact("the refused commit")
        #expect(FileManager.default.fileExists(atPath: lab.catalogPath))
        #expect(FileManager.default.fileExists(atPath: lab.journalRoot + "/p1"))
        #expect(try Self.pairCount(lab) == "2")
        #expect(lab.stop() == 0)
    }

    @Test func aRegularFileOrEtcShadowIsNoTarget() throws {
        let lab = try LabMaster()
        defer { lab.remove() }
        let image = lab.directory.path + "/file-target.img"
        try Data(count: 4 * Self.mib).write(to: URL(fileURLWithPath: image))
        let shadowBefore = try Data(contentsOf: URL(fileURLWithPath: "/etc/shadow"))
        for disk in ["/etc/shadow", image] {
            for force in [false, true] {
                let r = try mtAgent(["targets", "assign", disk, "--group", "g1", "--config", lab.config] + (force ? ["--force"] : []))
                #expect(r.status == 2, "\(disk) force=\(force): \(r.stdout) \(r.stderr)")
                #expect(r.stderr.split(separator: "\n").count == 1 && r.stderr.contains("regular file, not a block device"), "\(r.stderr)")
            }
        }
        let check = try mtAgent(["check", "target", image, "--config", lab.config])
        #expect(check.status == 1 && check.stdout.contains("target.kind"), "\(check.stdout)")
        let list = try mtAgent(["targets", "list", "--json", "--config", lab.config])
        #expect(!list.stdout.contains("shadow") && !list.stdout.contains(image), "\(list.stdout)")
        #expect(try Data(contentsOf: URL(fileURLWithPath: "/etc/shadow")) == shadowBefore)
        let bad = try mtAgent(["targets", "assign", image, "--group", "../g", "--config", lab.config])
        #expect(bad.status == 2 && bad.stderr.contains("--group") && bad.stderr.contains("group id"), "\(bad.stderr)")
    }
}
