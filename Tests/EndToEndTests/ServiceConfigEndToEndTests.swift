import Foundation
import Glibc
import Testing

/// The configuration as the service sees it: overrides from the environment and the command
/// line, and SIGHUP reloads — applied, needing a restart, or refused with the old one kept.
@Suite("serve configuration", .serialized)
struct ServiceConfigEndToEndTests {
    struct Status: Decodable {
        struct Settings: Decodable {
            var rpoThresholdSeconds: Int; var retentionWindowSeconds: Int; var appConsistentFrequencySeconds: Int
            var spacePolicy: String; var logLevel: String
            var restartNeeded: [String]
        }
        struct Problem: Decodable { var message: String; var fix: String }
        var listening: String; var settings: Settings; var problems: [Problem]
    }

    /// `config`: the file `status` reads to find the retention volume (the lab's by default).
    func status(_ lab: LabMaster, config: String? = nil) throws -> Status {
        let r = try mtAgent(["status", "--json", "--config", config ?? lab.config])
        #expect(r.status == 0 || r.status == 1, "\(r.stdout)\(r.stderr)")
        return try JSONDecoder().decode(Status.self, from: Data(r.stdout.utf8))
    }

    /// Sets keys in the lab's config file, as an admin edits it (lab init writes every key).
    func edit(_ lab: LabMaster, _ settings: [String: String]) throws {
        var lines = try String(contentsOfFile: lab.config, encoding: .utf8).split(separator: "\n", omittingEmptySubsequences: false).map(String.init)
        for (key, value) in settings {
            let index = try #require(lines.firstIndex { $0.hasPrefix(key + " =") })
            lines[index] = "\(key) = \(value)"
        }
        try lines.joined(separator: "\n").write(toFile: lab.config, atomically: true, encoding: .utf8)
    }

    /// Sends SIGHUP and waits for the log line that answers it.
    func hangup(_ lab: LabMaster, expect needle: String) throws -> String {
        let before = lab.log.utf8.count
        kill(try #require(lab.serverPID), SIGHUP)
        let deadline = Date().addingTimeInterval(20)
        while Date() < deadline {
            let fresh = String(lab.log.utf8.dropFirst(before)) ?? ""
            if fresh.contains(needle) { return fresh }
            usleep(50_000)
        }
        Issue.record("no '\(needle)' in the log after SIGHUP: \(lab.log)")
        return ""
    }

    @Test func environmentAndCommandLineOverrideTheFile() throws {
        let lab = try LabMaster()
        defer { lab.remove() }
        try edit(lab, ["rpo_threshold": "10m", "retention_window": "3h", "space_policy": "stop"])
        // The environment beats the file; --set beats the environment.
        try lab.start(environment: ["MT_AGENT_RPO_THRESHOLD": "7m", "MT_AGENT_RETENTION_WINDOW": "5h"],
                      arguments: ["--set", "retention_window=2h"])
        let s = try status(lab)
        #expect(s.settings.rpoThresholdSeconds == 420)
        #expect(s.settings.retentionWindowSeconds == 7200)
        #expect(s.settings.spacePolicy == "stop")
        #expect(s.settings.logLevel == "info")
        #expect(lab.stop() == 0)
    }

    @Test(arguments: [
        (["MT_AGENT_PORT": "nine"], [String](), "environment MT_AGENT_PORT: port: \"nine\" is not a TCP port (1–65535)"),
        ([:], ["--set", "space_policy=never"], "--set: space_policy: \"never\" is not one of prune-oldest, stop"),
        ([:], ["--set", "rpo=5m"], "--set: rpo: unknown key"),
        ([:], ["--set", "rpo_threshold"], "--set: expected KEY=VALUE, found \"rpo_threshold\""),
    ])
    func aBadOverrideIsOneLineNamingItsSource(environment: [String: String], arguments: [String], message: String) throws {
        let lab = try LabMaster()
        defer { lab.remove() }
        #expect(throws: LabError.self) { try lab.start(environment: environment, arguments: arguments) }
        let lines = lab.log.split(separator: "\n").filter { $0.contains("Error") || $0.contains("error") }
        #expect(lines.count == 1 && lines[0].contains(message), "\(lab.log)")
    }

    @Test func hangupReloadsWhatItCanAndKeepsTheOldConfigWhenTheFileIsBad() throws {
        let lab = try LabMaster()
        defer { lab.remove() }
        // The log level comes from the file (info), so that a reload can change it.
        try lab.start(logLevel: nil)
        let before = try status(lab)
        #expect(before.settings.rpoThresholdSeconds == 900 && before.settings.spacePolicy == "prune-oldest")
        #expect(before.settings.restartNeeded.isEmpty)

        // Reloadable keys apply at once; a changed port is reported as needing a restart and the
        // service keeps listening where it was.
        let newPort = lab.port == 65000 ? 65001 : 65000
        try edit(lab, ["port": "\(newPort)", "rpo_threshold": "2m", "space_policy": "stop", "log_level": "debug"])
        let reloaded = try hangup(lab, expect: "configuration reloaded")
        #expect(reloaded.contains("applied=rpo_threshold,space_policy,log_level"), "\(reloaded)")
        #expect(reloaded.contains("restart_needed=port"), "\(reloaded)")
        let after = try status(lab)
        #expect(after.settings.rpoThresholdSeconds == 120 && after.settings.spacePolicy == "stop" && after.settings.logLevel == "debug")
        #expect(after.settings.restartNeeded == ["port"])
        #expect(after.listening == before.listening)
        // The new level reaches loggers made before the reload: status requests log at debug only.
        #expect(!reloaded.contains("command=status") && lab.log.contains("command=status"), "\(lab.log)")
        #expect(after.problems.contains { $0.message.contains("port only apply after a restart") && $0.fix.contains("systemctl restart") })

        // A file that does not parse: one line naming the key, and the running settings stay.
        // (`status` itself needs a valid file to find the retention volume: it reads a copy.)
        let valid = lab.directory.appendingPathComponent("valid.conf").path
        try FileManager.default.copyItem(atPath: lab.config, toPath: valid)
        try edit(lab, ["rpo_threshold": "2 minutes"])
        let refused = try hangup(lab, expect: "configuration not reloaded")
        let line = try #require(refused.split(separator: "\n").first { $0.contains("configuration not reloaded") })
        #expect(line.contains("keeping the running one: \(lab.config) line"), "\(line)")
        #expect(line.contains("rpo_threshold: \"2 minutes\" is not a duration"), "\(line)")
        let kept = try status(lab, config: valid)
        #expect(kept.settings.rpoThresholdSeconds == 120 && kept.settings.spacePolicy == "stop" && kept.settings.logLevel == "debug")
        #expect(lab.serverPID != nil)

        // Fixed again: a reload with nothing new applies nothing.
        try edit(lab, ["rpo_threshold": "2m"])
        let again = try hangup(lab, expect: "configuration reloaded")
        #expect(again.contains("applied=\"nothing changed\"") || again.contains("applied=nothing changed"), "\(again)")
        #expect(lab.stop() == 0)
    }

    /// app_consistent_frequency: a group whose newest app-consistent point is older is a problem
    /// in status; the key is reloaded by SIGHUP.
    @Test func aStaleAppConsistentPointIsAProblem() throws {
        let lab = try LabMaster()
        defer { lab.remove() }
        try edit(lab, ["app_consistent_frequency": "1h"])
        // Three points, the newest of them app-consistent, all with source time now.
        _ = try RecoveryEndToEndTests.replicated(lab, size: 4 * RecoveryEndToEndTests.mib, writes: 120, lengths: [4096], seed: 11)
        let fresh = try status(lab)
        #expect(fresh.settings.appConsistentFrequencySeconds == 3600)
        #expect(!fresh.problems.contains { $0.message.contains("app-consistent") }, "\(fresh.problems)")

        try edit(lab, ["app_consistent_frequency": "1s"])
        let reloaded = try hangup(lab, expect: "configuration reloaded")
        #expect(reloaded.contains("applied=app_consistent_frequency"), "\(reloaded)")
        usleep(2_100_000)
        let stale = try status(lab)
        #expect(stale.settings.appConsistentFrequencySeconds == 1)
        let problem = try #require(stale.problems.first { $0.message.contains("app-consistent") })
        #expect(problem.message.hasPrefix("group g1: newest app-consistent point is ") && problem.message.hasSuffix("over app_consistent_frequency 1 s"))
        #expect(problem.fix.contains("--app-tag"))
        #expect(try mtAgent(["status", "--config", lab.config]).status == 1)
        #expect(lab.stop() == 0)
    }

    /// While a sender streams changes, status shows the pair connected and receiving.
    @Test func statusShowsThroughputWhileASenderStreams() throws {
        let lab = try LabMaster()
        defer { lab.remove() }
        let size = 16 << 20
        let source = lab.directory.path + "/source.img"
        var rng = SeededBytes(state: 21)
        try Data(rng.bytes(size)).write(to: URL(fileURLWithPath: source))
        let target = try lab.target(bytes: UInt64(size))
        try lab.start()
        let follower = try Background(lab.sendArguments("follow", source: source, pair: "p1", target: target) + ["--interval", "0.2"],
                                      stderrPath: lab.directory.path + "/follow.err")
        defer { follower.kill9() }
        // Keep changing the source: 1 MiB somewhere every 50 ms.
        let handle = try FileHandle(forWritingTo: URL(fileURLWithPath: source))
        defer { try? handle.close() }
        var seen: (rate: Double, text: String)?
        let deadline = Date().addingTimeInterval(30)
        while Date() < deadline, seen == nil {
            for _ in 0..<10 {
                try handle.seek(toOffset: UInt64(Int.random(in: 0..<(size >> 20))) << 20)
                try handle.write(contentsOf: rng.bytes(1 << 20))
                usleep(50_000)
            }
            let r = try mtAgent(["status", "--json", "--config", lab.config])
            struct S: Decodable {
                struct G: Decodable { struct P: Decodable { var connected: Bool; var throughputBytesPerSecond: Double }; var pairs: [P] }
                var groups: [G]
            }
            if let pair = try? JSONDecoder().decode(S.self, from: Data(r.stdout.utf8)).groups.first?.pairs.first,
               pair.connected, pair.throughputBytesPerSecond > 0 {
                seen = (pair.throughputBytesPerSecond, try mtAgent(["status", "--config", lab.config]).stdout)
            }
        }
        let (rate, text) = try #require(seen, "status never showed the pair receiving")
        // At most what was written to the source in 10 s, plus the 16 MiB initial resync.
        #expect(rate <= Double(size + 20 * (1 << 20)) / 10)
        #expect(text.contains("RECEIVING") && text.contains("/s"), "\(text)")
        follower.kill9()
        #expect(lab.stop() == 0)
    }
}
