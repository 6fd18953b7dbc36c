import Foundation
import Testing

@Suite("check retention as a user runs it", .tags(.large), .serialized)
struct RetentionCommandTests {
    static let ids = [
        "retention.mounted", "retention.filesystem", "retention.system-volume", "retention.cache-volume",
        "retention.replication-target", "retention.holders", "retention.capacity", "retention.free-space",
        "retention.writable", "retention.write-probe",
    ]

    @Test func helpShowsExamples() throws {
        let r = try mtAgent(["check", "retention", "--help"])
        #expect(r.status == 0)
        #expect(r.stdout.contains("Examples:") && r.stdout.contains("mt-agent check retention /dev/sdb1"))
        #expect(r.stdout.contains("--pairs") && r.stdout.contains("--targets") && r.stdout.contains("--probe-timeout"))
    }

    @Test func aMissingPathIsOneErrorLineAndExit2() throws {
        let dir = try temporaryDirectory()
        defer { try? FileManager.default.removeItem(at: dir) }
        let file = dir.appendingPathComponent("file").path
        FileManager.default.createFile(atPath: file, contents: Data())
        for (path, says) in [(dir.path + "/missing", "does not exist"), (file, "neither a directory nor a block device")] {
            let r = try mtAgent(["check", "retention", path, "--json"])
            #expect(r.status == 2)
            #expect(r.stdout.isEmpty)
            let lines = r.stderr.split(separator: "\n")
            #expect(lines.count == 1, "expected one line, got: \(r.stderr)")
            #expect(lines.first?.hasPrefix("mt-agent: error: retention path \(path) ") == true)
            #expect(r.stderr.contains(says))
        }
    }

    @Test func badOptionsAreRefused() throws {
        #expect(try mtAgent(["check", "retention", "/", "--pairs", "-1"]).status != 0)
        #expect(try mtAgent(["check", "retention", "/", "--probe-timeout", "0"]).status != 0)
    }

    /// A directory on / is not a volume of its own: exit 1, and the JSON document has one
    /// result per rule with every documented field.
    @Test func aDirectoryOnTheSystemVolumeFailsWithExit1() throws {
        let dir = try temporaryDirectory()
        defer { try? FileManager.default.removeItem(at: dir) }
        let table = try mtAgent(["check", "retention", dir.path])
        #expect(table.status == 1, "\(table.stderr)")
        #expect(table.stdout.contains("FAIL  retention.mounted: \(dir.path) is a directory on the system volume"))
        #expect(table.stdout.contains("fix: mount a dedicated volume at \(dir.path)"))
        #expect(table.stdout.contains("SKIP  retention.write-probe: not run"))

        let r = try mtAgent(["check", "retention", dir.path, "--json", "--pairs", "2", "--targets", "sdx,sdy"])
        #expect(r.status == 1)
        let checks = try #require(try r.json["checks"] as? [[String: Any]])
        #expect(checks.compactMap { $0["id"] as? String } == Self.ids)
        for check in checks {
            #expect(Set(check.keys) == ["id", "status", "message", "fix", "subjects"], "\(check)")
            let status = try #require(check["status"] as? String)
            #expect(["pass", "warn", "fail", "skip"].contains(status))
            #expect((check["fix"] is NSNull) == (status == "pass" || status == "skip"), "\(check)")
            for subject in check["subjects"] as? [[String: Any]] ?? [] {
                #expect(Set(subject.keys) == ["name", "hctl", "wwid", "detail"])
            }
        }
        let mounted = try #require(checks.first { $0["id"] as? String == "retention.mounted" })
        #expect(mounted["status"] as? String == "fail")
        let free = try #require(checks.first { $0["id"] as? String == "retention.free-space" })
        #expect((free["message"] as? String)?.contains("256 MiB × (2 pairs + 4)") == true)
        let target = try #require(checks.first { $0["id"] as? String == "retention.replication-target" })
        #expect((target["message"] as? String)?.contains("sdx, sdy") == true)
    }

    @Test(.enabled(if: getuid() == 0, "needs root for loop devices"))
    func aDedicatedExt4VolumePassesWithExit0() throws {
        let volume = try LoopVolume(sizeMiB: 1280)
        defer { volume.remove() }
        let r = try mtAgent(["check", "retention", volume.mountPoint])
        #expect(r.status == 0, "\(r.stdout)\(r.stderr)")
        #expect(r.stdout.split(separator: "\n").count == Self.ids.count)
        #expect(r.stdout.split(separator: "\n").allSatisfy { $0.hasPrefix("PASS  retention.") }, "\(r.stdout)")

        let json = try mtAgent(["check", "retention", volume.device, "--json"])
        #expect(json.status == 0)
        let checks = try #require(try json.json["checks"] as? [[String: Any]])
        #expect(checks.allSatisfy { $0["status"] as? String == "pass" })
        let subjects = checks.first?["subjects"] as? [[String: Any]]
        #expect(subjects?.first?["name"] as? String == URL(fileURLWithPath: volume.device).lastPathComponent)
    }

    /// A frozen volume: the command reports it and exits on time, and its stdout reaches EOF —
    /// the probe left stuck in the kernel holds none of mt-agent's descriptors.
    @Test(.enabled(if: getuid() == 0, "needs root for loop devices"))
    func aFrozenVolumeFailsAndTheCommandStillExitsOnTime() throws {
        let volume = try LoopVolume(sizeMiB: 1280)
        defer { volume.remove() }
        try volume.freeze()
        let start = Date()
        let r = try mtAgent(["check", "retention", volume.mountPoint, "--probe-timeout", "1"])
        let took = Date().timeIntervalSince(start)
        #expect(r.status == 1)
        #expect(r.stdout.contains("FAIL  retention.write-probe:") && r.stdout.contains("frozen"))
        #expect(r.stdout.contains("fsfreeze -u \(volume.mountPoint)"))
        #expect(took < 8, "took \(took) s")
    }
}

/// A loop device with ext4, mounted in a private temporary directory. `remove()` thaws,
/// unmounts, detaches and deletes, whatever state a failed test left it in.
final class LoopVolume {
    let directory: URL
    let device: String
    let mountPoint: String
    private var frozen = false

    init(sizeMiB: Int) throws {
        let directory = try temporaryDirectory()
        let image = directory.appendingPathComponent("volume.img").path
        let mountPoint = directory.appendingPathComponent("retention").path
        var attached: String?
        do {
            try Self.run("truncate", "-s", "\(sizeMiB)M", image)
            let device = try Self.run("losetup", "--find", "--show", image).trimmingCharacters(in: .whitespacesAndNewlines)
            attached = device
            try Self.run("mkfs.ext4", "-q", "-F", device)
            try Self.run("mkdir", "-p", mountPoint)
            try Self.run("mount", device, mountPoint)
        } catch {
            if let attached { _ = try? Self.run("losetup", "-d", attached) }
            try? FileManager.default.removeItem(at: directory)
            throw error
        }
        self.directory = directory
        self.device = attached!
        self.mountPoint = mountPoint
    }

    func freeze() throws {
        try Self.run("fsfreeze", "-f", mountPoint)
        frozen = true
    }

    func remove() {
        if frozen { _ = try? Self.run("fsfreeze", "-u", mountPoint) }
        _ = try? Self.run("umount", "-l", mountPoint)
        _ = try? Self.run("losetup", "-d", device)
        try? FileManager.default.removeItem(at: directory)
    }

    @discardableResult
    static func run(_ argv: String...) throws -> String {
        let p = Process()
        p.executableURL = URL(fileURLWithPath: "/usr/bin/env")
        p.arguments = argv
        let out = Pipe()
        p.standardOutput = out
        p.standardError = FileHandle.nullDevice
        try p.run()
        let data = out.fileHandleForReading.readDataToEndOfFile()
        p.waitUntilExit()
        guard p.terminationStatus == 0 else {
            throw CocoaError(.executableLoad, userInfo: [NSLocalizedDescriptionKey: "\(argv.joined(separator: " ")) failed"])
        }
        return String(decoding: data, as: UTF8.self)
    }
}
