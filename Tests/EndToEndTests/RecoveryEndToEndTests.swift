import Foundation
import Glibc
import MTAgentJournal
import MTAgentReplication
import Testing

/// A replay trace of random writes with a tag every `every` writes, and the SHA-256 of the source
/// at each tag, computed from the trace alone (docs/sender.md).
struct TaggedTrace {
    var lines: [String] = []
    /// Tag name → SHA-256 of the source at that tag.
    var expected: [String: String] = [:]
    var final: [UInt8]

    init(initial: [UInt8], writes: Int, every: Int, appEvery: Int, lengths: [Int], seed: UInt64) {
        var rng = SeededBytes(state: seed)
        var model = initial
        for i in 0..<writes {
            let length = lengths[Int(rng.next() % UInt64(lengths.count))]
            let offset = Int(rng.next() % UInt64(model.count - length))
            let seed = rng.next() >> 1
            lines.append("write \(offset) \(length) \(seed)")
            model.replaceSubrange(offset..<(offset + length), with: Trace.data(seed: seed, count: length))
            if i % every == every - 1 {
                let n = i / every
                let name = "t\(n)"
                lines.append("tag \(n % appEvery == appEvery - 1 ? "app" : "crash") \(name)")
                expected[name] = sha256(model)
            }
        }
        final = model
    }

    func write(to path: String) throws {
        try lines.joined(separator: "\n").write(toFile: path, atomically: true, encoding: .utf8)
    }
}

/// `points`, `failover`, `commit` as an operator runs them: through the running service's control
/// socket, or directly when the service is stopped, with kill -9 in the middle of a rollback.
@Suite("End to end: recovery", .serialized)
struct RecoveryEndToEndTests {
    static let mib = 1 << 20

    struct Point: Decodable {
        var id: Int64
        var tagID: UInt64
        var kind: String
        var name: String
        var latest: Bool
        var latestApp: Bool
        var current: Bool
    }
    struct Group: Decodable {
        var group: String
        var points: [Point]
    }

    static func points(_ lab: LabMaster) throws -> [Point] {
        let r = try mtAgent(["points", "--group", "g1", "--json", "--config", lab.config])
        #expect(r.status == 0, "\(r.stderr)")
        return try JSONDecoder().decode([Group].self, from: Data(r.stdout.utf8)).first?.points ?? []
    }

    /// A lab with one pair replicated from a trace; returns the target, the source and the trace.
    static func replicated(_ lab: LabMaster, size: Int, writes: Int, lengths: [Int], seed: UInt64) throws -> (target: String, source: String, trace: TaggedTrace) {
        var rng = SeededBytes(state: seed)
        let initial = rng.bytes(size)
        let source = lab.directory.path + "/source.img"
        try Data(initial).write(to: URL(fileURLWithPath: source))
        let target = try lab.target(bytes: UInt64(size))
        try lab.start()
        let first = try mtAgent(lab.sendArguments("resync", source: source, pair: "p1", target: target))
        #expect(first.status == 0, "\(first.stderr)")
        let trace = TaggedTrace(initial: initial, writes: writes, every: 40, appEvery: 3, lengths: lengths, seed: seed + 1)
        let path = lab.directory.path + "/writes.trace"
        try trace.write(to: path)
        let replay = try mtAgent(lab.sendArguments("replay", source: source, pair: "p1", target: target) + [path])
        #expect(replay.status == 0, "\(replay.stderr)")
        return (target, source, trace)
    }

    @Test func failoverThroughTheServiceStopsTheSenderChangesPointAndCommits() throws {
        let lab = try LabMaster()
        defer { lab.remove() }
        let (target, source, trace) = try Self.replicated(lab, size: 8 * Self.mib, writes: 400, lengths: [512, 4096, 30_000, 131_072], seed: 3)
        let points = try Self.points(lab)
        #expect(points.count == 10 && points.first?.latest == true)
        let app = try #require(points.first { $0.latestApp })
        #expect(app.kind == "app" && app.name == "t8")
        // Newest first, each with the sender's TAG id beside the catalog's point id.
        #expect(zip(points, points.dropFirst()).allSatisfy { $0.tagID > $1.tagID && $0.id > $1.id })

        // A sender still following the source when the operator fails over.
        let follower = try Background(lab.sendArguments("follow", source: source, pair: "p1", target: target) + ["--interval", "0.5"],
                                      stderrPath: lab.directory.path + "/follow.err")
        defer { follower.kill9() }
        usleep(1_500_000)
        let failover = try mtAgent(["failover", "--group", "g1", "--point", "latest-app", "--yes", "--json", "--config", lab.config])
        #expect(failover.status == 0, "\(failover.stderr)")
        #expect(try sha256(target) == trace.expected["t8"])
        let stopped = follower.wait()
        #expect(stopped.status == 2 && stopped.stderr.contains("failed-over"), "the follower went on: \(stopped.stderr)")
        #expect(lab.log.contains("replication stopped for failover"))

        // Change to an older point, to the newest, and back: exact each time.
        for name in ["t2", "t9", "t0", "t5"] {
            let id = try #require(points.first { $0.name == name }?.id)
            let r = try mtAgent(["failover", "--group", "g1", "--point", "\(id)", "--yes", "--config", lab.config])
            #expect(r.status == 0, "\(r.stderr)")
            #expect(r.stdout.contains("group g1 is at point \(id)"))
            #expect(try sha256(target) == trace.expected[name], "point \(name)")
            #expect(try Self.points(lab).first { $0.current }?.id == id)
        }
        // A sender that connects now is refused and does not retry.
        let late = try mtAgent(lab.sendArguments("resync", source: source, pair: "p1", target: target))
        #expect(late.status == 2 && late.stderr.contains("failed over to recovery point"), "\(late.stderr)")

        let commit = try mtAgent(["commit", "--group", "g1", "--json", "--config", lab.config])
        #expect(commit.status == 0, "\(commit.stderr)")
        #expect(commit.stdout.contains("\"journalBytesFreed\""))
        #expect(try sha256(target) == trace.expected["t5"])
        let list = try mtAgent(["targets", "list", "--json", "--config", lab.config])
        #expect(list.stdout.trimmingCharacters(in: .whitespacesAndNewlines) == "[\n\n]" || !list.stdout.contains(target))
        #expect(!FileManager.default.fileExists(atPath: lab.journalRoot + "/p1"))
        #expect(lab.stop() == 0)
    }

    @Test func statusShowsTheServiceLikeSystemctl() throws {
        let lab = try LabMaster()
        defer { lab.remove() }
        let stopped = try mtAgent(["status", "--config", lab.config])
        #expect(stopped.status == 3 && stopped.stdout.contains("not running"), "\(stopped.stdout)\(stopped.stderr)")
        let (target, _, _) = try Self.replicated(lab, size: 4 * Self.mib, writes: 120, lengths: [4096, 65_536], seed: 6)
        struct Status: Decodable {
            struct Group: Decodable {
                struct Pair: Decodable { var pair: String; var target: String; var state: String; var connected: Bool; var durableSeq: UInt64; var journalBytes: UInt64 }
                var group: String; var pairs: [Pair]; var points: Int; var rpoLagSeconds: Double?; var rpoThresholdSeconds: Int
            }
            struct Problem: Decodable { var message: String; var fix: String }
            var running: Bool; var version: String; var listening: String; var groups: [Group]; var problems: [Problem]
        }
        let healthy = try mtAgent(["status", "--json", "--config", lab.config])
        #expect(healthy.status == 0, "\(healthy.stdout)\(healthy.stderr)")
        let s = try JSONDecoder().decode(Status.self, from: Data(healthy.stdout.utf8))
        #expect(s.running && s.listening.hasSuffix(":\(lab.port)") && s.problems.isEmpty)
        let pair = try #require(s.groups.first { $0.group == "g1" }?.pairs.first)
        #expect(pair.pair == "p1" && pair.target == target && pair.state == "in-sync" && pair.durableSeq > 100 && pair.journalBytes > 0)
        #expect(s.groups[0].points == 3 && (s.groups[0].rpoLagSeconds ?? -1) >= 0 && s.groups[0].rpoThresholdSeconds == 900)
        let text = try mtAgent(["status", "--config", lab.config])
        #expect(text.stdout.contains("group g1: 3 points") && text.stdout.contains("no problems"), "\(text.stdout)")
        // A failed-over group is a problem to act on: exit 1, with the fix.
        #expect(try mtAgent(["failover", "--group", "g1", "--point", "latest", "--yes", "--config", lab.config]).status == 0)
        let after = try mtAgent(["status", "--config", lab.config])
        #expect(after.status == 1 && after.stdout.contains("group g1 is failed over") && after.stdout.contains("fix: mt-agent failover"), "\(after.stdout)")
        #expect(lab.stop() == 0)
        #expect(try mtAgent(["status", "--json", "--config", lab.config]).stdout.contains(#"{"running": false}"#))
    }

    /// Under systemd with stderr going to the journal, every line carries its syslog priority.
    @Test func logsCarrySyslogPrioritiesForTheJournal() throws {
        let lab = try LabMaster()
        defer { lab.remove() }
        try lab.start(environment: ["JOURNAL_STREAM": "8:12345"])
        #expect(lab.stop() == 0)
        let lines = lab.log.split(separator: "\n")
        #expect(!lines.isEmpty && lines.allSatisfy { $0.hasPrefix("<") && "234567".contains($0.dropFirst().first!) && $0.dropFirst(2).hasPrefix(">") },
                "\(lab.log)")
        #expect(lines.contains { $0.hasPrefix("<5>mt-agent.serve: port=") && $0.hasSuffix(" ready") }, "\(lab.log)")
        #expect(lines.contains { $0.hasPrefix("<6>mt-agent.serve: ") && $0.contains("starting") }, "\(lab.log)")
        // Without it, the plain swift-log format.
        try lab.start(environment: ["JOURNAL_STREAM": ""])
        #expect(lab.stop() == 0)
        #expect(lab.log.split(separator: "\n").last { $0.contains("listening") }?.contains(" info mt-agent.serve:") == true, "\(lab.log)")
    }

    @Test func badInputIsOneClearLineAndChangesNothing() throws {
        let lab = try LabMaster()
        defer { lab.remove() }
        let (target, _, _) = try Self.replicated(lab, size: 4 * Self.mib, writes: 120, lengths: [4096, 65_536], seed: 5)
        let before = try sha256(target)
        let cases: [([String], String)] = [
            (["failover", "--group", "nope", "--point", "latest", "--yes"], "no group nope on this master target (groups: g1)"),
            (["failover", "--group", "g1", "--point", "4242", "--yes"], "group g1 has no recovery point 4242"),
            (["failover", "--group", "g1", "--point", "2001-01-01T00:00:00Z", "--yes"], "is before the oldest recovery point of group g1"),
            (["failover", "--group", "g1", "--point", "yesterday", "--yes"], "is not latest, latest-app, a point id or a time"),
            (["failover", "--group", "g1", "--point", "latest"], "pass --yes to confirm"),
            (["commit", "--group", "g1"], "group g1 is not failed over"),
            (["points", "--group", "nope"], "no group nope"),
        ]
        for (arguments, message) in cases {
            let r = try mtAgent(arguments + ["--config", lab.config])
            #expect(r.status != 0 && r.stderr.contains(message), "\(arguments): \(r.stderr)")
            #expect(r.stderr.split(separator: "\n").filter { $0.lowercased().contains("error:") }.count == 1, "\(arguments): \(r.stderr)")
        }
        #expect(try sha256(target) == before)
        #expect(lab.stop() == 0)
    }

    /// kill -9 of `mt-agent failover` (run directly: the service is stopped) in each phase of a
    /// rollback and at random moments; the next failover — to the same point or another — or the
    /// service's next start finishes it, exactly.
    @Test func killNineDuringRollbackThenResume() throws {
        let lab = try LabMaster()
        defer { lab.remove() }
        let (target, _, trace) = try Self.replicated(lab, size: 48 * Self.mib, writes: 600, lengths: [262_144, 1 << 20, 2 << 20], seed: 9)
        let points = try Self.points(lab)
        let name = Dictionary(uniqueKeysWithValues: points.map { ($0.id, $0.name) })
        #expect(lab.stop() == 0)

        struct State: Decodable { var pointID: Int64; var status: String }
        struct GroupState: Decodable { var failover: State? }
        func failoverState() throws -> State? {
            let r = try mtAgent(["points", "--group", "g1", "--json", "--config", lab.config])
            return try JSONDecoder().decode([GroupState].self, from: Data(r.stdout.utf8)).first?.failover
        }
        var rng = SeededBytes(state: 17)
        var midway = 0
        // (failpoint, point, how it is finished): killed in a known phase, then random moments.
        let rounds: [(String?, Int, String)] = [
            ("failover.saving", 2, "failover"),                // nothing saved yet: a saving phase
            ("failover.undoing", points.count - 1, "serve"),  // the oldest point: a long undo phase
            ("failover.forward", 0, "serve"),                  // the newest point, from the oldest: forward phase only
            (nil, Int(rng.next() % UInt64(points.count)), "serve"),
            (nil, Int(rng.next() % UInt64(points.count)), "failover"),
            (nil, Int(rng.next() % UInt64(points.count)), "serve"),
        ]
        for (round, (failpoint, index, finisher)) in rounds.enumerated() {
            let point = points[index]
            let run = try Background(["failover", "--group", "g1", "--point", "\(point.id)", "--yes", "--config", lab.config],
                                     stderrPath: lab.directory.path + "/failover-\(round).err",
                                     environment: failpoint.map { ["MT_AGENT_FAILPOINT": $0] } ?? [:])
            if failpoint == nil {
                usleep(useconds_t(20_000 + rng.next() % 300_000))
                run.kill9()
            }
            let status = run.wait().status
            // Where the targets must end: the catalog says which failover was recorded (a run killed
            // before recording it changed nothing).
            let state = try #require(try failoverState(), "round \(round): no failover recorded")
            if state.status == "rolling-back" { midway += 1 }
            if failpoint != nil {
                #expect(status != 0, "round \(round): the failpoint did not kill")
                #expect(state.status == "rolling-back" && state.pointID == point.id, "round \(round): \(state)")
            }
            var expected = try #require(name[state.pointID])
            if finisher == "serve" {
                try lab.start()
                #expect(try sha256(target) == trace.expected[expected], "round \(round): finished by serve at start")
                #expect(lab.stop() == 0)
            } else {
                let other = points[Int(rng.next() % UInt64(points.count))]
                let again = try mtAgent(["failover", "--group", "g1", "--point", "\(other.id)", "--yes", "--config", lab.config])
                #expect(again.status == 0, "\(again.stderr)")
                expected = other.name
                #expect(try sha256(target) == trace.expected[expected], "round \(round): finished by another failover")
            }
            #expect(try failoverState()?.status == "at-point")
        }
        #expect(midway >= 3, "only \(midway) rounds were killed mid-rollback")
        #expect(lab.log.contains("finishing an interrupted failover"))
        let commit = try mtAgent(["commit", "--group", "g1", "--config", lab.config])
        #expect(commit.status == 0, "\(commit.stderr)")
    }
}

/// The space policy on a real retention volume filled on purpose while serve runs.
@Suite("End to end: a full retention volume", .serialized)
struct RetentionSpaceEndToEndTests {
    static func freeBytes(_ path: String) -> UInt64 {
        var s = statvfs()
        statvfs(path, &s)
        return UInt64(s.f_bavail) * UInt64(s.f_frsize)
    }

    static func waitForLog(_ lab: LabMaster, _ text: String, seconds: Double = 40) -> Bool {
        let deadline = Date().addingTimeInterval(seconds)
        while Date() < deadline {
            if lab.log.contains(text) { return true }
            usleep(200_000)
        }
        return false
    }

    @Test(arguments: ["prune-oldest", "stop"])
    func theSpacePolicyIsFollowedAndTheTargetsStayIntact(policy: String) throws {
        let lab = try LabMaster()
        defer { lab.remove() }
        var config = try String(contentsOfFile: lab.config, encoding: .utf8)
        config = config.replacingOccurrences(of: "space_policy = prune-oldest", with: "space_policy = \(policy)")
        try config.write(toFile: lab.config, atomically: true, encoding: .utf8)
        var rng = SeededBytes(state: 77)
        let size = 16 << 20
        let initial = rng.bytes(size)
        let source = lab.directory.path + "/source.img"
        try Data(initial).write(to: URL(fileURLWithPath: source))
        let target = try lab.target(bytes: UInt64(size))
        // 1 MiB journal segments, so pruning frees space in a small journal.
        try lab.start(environment: ["MT_AGENT_JOURNAL_SEGMENT_BYTES": "\(1 << 20)"])
        #expect(try mtAgent(lab.sendArguments("resync", source: source, pair: "p1", target: target)).status == 0)
        let trace = TaggedTrace(initial: initial, writes: 480, every: 40, appEvery: 3, lengths: [65_536, 131_072, 262_144], seed: 78)
        let path = lab.directory.path + "/writes.trace"
        try trace.write(to: path)
        let replay = try mtAgent(lab.sendArguments("replay", source: source, pair: "p1", target: target) + [path])
        #expect(replay.status == 0, "\(replay.stderr)")
        let pointsBefore = try RecoveryEndToEndTests.points(lab)
        #expect(pointsBefore.count == 12)

        // Fill the volume to 24 MiB under the reserve of one pair: 256 MiB × (1 + 4).
        let reserve: UInt64 = (256 << 20) * 5
        let filler = lab.retention.mountPoint + "/filler"
        let fill = Self.freeBytes(lab.retention.mountPoint) - (reserve - (24 << 20))
        _ = try LoopVolume.run("fallocate", "-l", "\(fill)", filler)
        #expect(Self.freeBytes(lab.retention.mountPoint) < reserve)

        if policy == "prune-oldest" {
            #expect(Self.waitForLog(lab, "pruned the oldest recovery point early"), "\(lab.log.suffix(2000))")
            #expect(Self.waitForLog(lab, "removed journal segments"))
            usleep(500_000)
            #expect(Self.freeBytes(lab.retention.mountPoint) >= reserve)
            let after = try RecoveryEndToEndTests.points(lab)
            #expect(after.count < pointsBefore.count && after.first?.name == "t11")
            let listing = try mtAgent(["points", "--group", "g1", "--config", lab.config])
            #expect(listing.stdout.contains("warning:") && listing.stdout.contains("ran short of space"), "\(listing.stdout)")
            // Replication goes on, and the oldest point left is exact.
            let more = try mtAgent(lab.sendArguments("resync", source: source, pair: "p1", target: target))
            #expect(more.status == 0, "\(more.stderr)")
            let oldest = try #require(after.last)
            let r = try mtAgent(["failover", "--group", "g1", "--point", "\(oldest.id)", "--yes", "--config", lab.config])
            #expect(r.status == 0, "\(r.stderr)")
            #expect(try sha256(target) == trace.expected[oldest.name], "point \(oldest.name)")
        } else {
            // A sender that keeps following is stopped with the reason; the targets keep what was acked.
            let follower = try Background(lab.sendArguments("follow", source: source, pair: "p1", target: target) + ["--interval", "0.5"],
                                          stderrPath: lab.directory.path + "/follow.err")
            defer { follower.kill9() }
            #expect(Self.waitForLog(lab, "retention volume full: replication stopped"), "\(lab.log.suffix(2000))")
            let stopped = follower.wait()
            #expect(stopped.status == 2 && stopped.stderr.contains("space_policy is stop"), "\(stopped.stderr)")
            #expect(try RecoveryEndToEndTests.points(lab).count >= pointsBefore.count, "stop must not prune for space")
            let refused = try mtAgent(lab.sendArguments("resync", source: source, pair: "p1", target: target))
            #expect(refused.status == 2 && refused.stderr.contains("retention-full"), "\(refused.stderr)")
            let r = try mtAgent(["failover", "--group", "g1", "--point", "t5", "--yes", "--config", lab.config])
            #expect(r.status != 0, "t5 is a name, not an id")
            let t5 = try #require(pointsBefore.first { $0.name == "t5" })
            #expect(try mtAgent(["failover", "--group", "g1", "--point", "\(t5.id)", "--yes", "--config", lab.config]).status == 0)
            #expect(try sha256(target) == trace.expected["t5"])
            // Freeing space lets replication be accepted again (after commit the group is gone;
            // here the failed-over group stays refused, so only the log is checked).
            try FileManager.default.removeItem(atPath: filler)
            #expect(Self.waitForLog(lab, "retention volume has space again"))
        }
        #expect(lab.stop() == 0)
    }
}
