import Foundation
import Testing

@Suite("mt-agent as a user runs it", .tags(.large), .serialized)
struct CLITests {
    @Test func helpShowsExamples() throws {
        for command in [["disks"], ["check", "enable-uuid"], ["collect"]] {
            let r = try mtAgent(command + ["--help"])
            #expect(r.status == 0)
            #expect(r.stdout.contains("Examples:"), "\(command) --help has no examples")
            #expect(r.stdout.contains("mt-agent \(command.joined(separator: " "))"))
        }
    }

    @Test func badRootIsOneClearLineAndExit2() throws {
        let dir = try temporaryDirectory()
        defer { try? FileManager.default.removeItem(at: dir) }
        for args in [["disks", "--root", dir.path], ["check", "enable-uuid", "--root", dir.path + "/missing"]] {
            let r = try mtAgent(args)
            #expect(r.status == 2)
            #expect(r.stdout.isEmpty)
            let lines = r.stderr.split(separator: "\n")
            #expect(lines.count == 1, "expected one line, got: \(r.stderr)")
            #expect(lines.first?.hasPrefix("mt-agent: error: --root ") == true)
            #expect(r.stderr.contains("not a system tree"))
        }
    }

    @Test func aTarballAsRootSaysHowToUseIt() throws {
        let dir = try temporaryDirectory()
        defer { try? FileManager.default.removeItem(at: dir) }
        let tarball = dir.appendingPathComponent("capture.tar.gz").path
        FileManager.default.createFile(atPath: tarball, contents: Data([0x1f, 0x8b]))
        let r = try mtAgent(["disks", "--root", tarball])
        #expect(r.status == 2)
        #expect(r.stderr.contains("tar -xzf"))
    }

    @Test func unknownSubcommandAndBadOptionFail() throws {
        #expect(try mtAgent(["frobnicate"]).status != 0)
        #expect(try mtAgent(["disks", "--log-level", "loud"]).status != 0)
        #expect(try mtAgent(["--version"]).stdout.contains("0."))
    }

    @Test(.enabled(if: getuid() == 0, "needs root to switch to an unprivileged user"))
    func nonRootUserGetsTheInventoryAndIsToldWhatNeedsRoot() throws {
        let dir = try temporaryDirectory()
        defer { try? FileManager.default.removeItem(at: dir) }
        // Make sure the unprivileged user can reach the binary wherever the checkout lives.
        let copy = dir.appendingPathComponent("mt-agent").path
        try FileManager.default.copyItem(atPath: binary, toPath: copy)
        try FileManager.default.setAttributes([.posixPermissions: 0o755], ofItemAtPath: dir.path)
        let r = try mtAgent(["disks", "--json"], binary: copy, as: 65534)
        #expect(r.status == 0)
        #expect((try r.json["disks"] as? [Any])?.isEmpty == false)
        #expect(r.stderr.contains("need root"), "stderr: \(r.stderr)")
    }

    /// The support snapshot: a tarball captured live reads back as the same inventory.
    @Test(.enabled(if: getuid() == 0, "reads live block devices"))
    func collectTarballReadsBackAsLive() throws {
        let dir = try temporaryDirectory()
        defer { try? FileManager.default.removeItem(at: dir) }
        let tarball = dir.appendingPathComponent("snap.tar.gz").path
        let c = try mtAgent(["collect", tarball])
        #expect(c.status == 0, "\(c.stderr)")
        #expect(c.stdout.contains("captured"))
        let tree = dir.appendingPathComponent("tree")
        try FileManager.default.createDirectory(at: tree, withIntermediateDirectories: true)
        let tar = Process()
        tar.executableURL = URL(fileURLWithPath: "/bin/tar")
        tar.arguments = ["-xzf", tarball, "-C", tree.path]
        try tar.run()
        tar.waitUntilExit()
        #expect(tar.terminationStatus == 0)

        func summary(_ run: Run) throws -> [String] {
            let disks = try #require(try run.json["disks"] as? [[String: Any]])
            return disks.map { d in
                let parts = (d["partitions"] as? [[String: Any]] ?? []).map { "\($0["name"]!)@\($0["startBytes"]!)" }
                return "\(d["name"]!) \(d["hctl"] ?? "-") \(d["wwid"] ?? "-") \(d["sizeBytes"]!) \(d["driver"] ?? "-") \(parts)"
            }
        }
        let live = try mtAgent(["disks", "--json"])
        let captured = try mtAgent(["disks", "--json", "--root", tree.path])
        #expect(captured.status == 0, "\(captured.stderr)")
        #expect(try summary(captured) == summary(live))
        #expect(try (captured.json["host"] as? [String: Any])?["source"] as? String == "sysfs")
    }
}
