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
        // The version and the commit the binary was built from (Plugins/BuildInfo).
        let version = try mtAgent(["--version"]).stdout
        let head = try LoopVolume.run("git", "-C", URL(fileURLWithPath: #filePath).deletingLastPathComponent().path, "rev-parse", "--short=12", "HEAD")
            .trimmingCharacters(in: .whitespacesAndNewlines)
        #expect(version.hasPrefix("0.") && version.contains("(commit \(head)"), "\(version) vs HEAD \(head)")
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

    /// docs/json-output.md: every listed field is present, null when it does not apply.
    @Test func disksJSONCarriesEveryDocumentedField() throws {
        let r = try mtAgent(["disks", "--json", "--root", fixture("kvm-virtio-nvme")])
        #expect(r.status == 0, "\(r.stderr)")
        let json = try r.json
        let host = try #require(json["host"] as? [String: Any])
        #expect(Set(host.keys).isSuperset(of: ["hypervisor", "hostname", "kernel", "os", "root", "source", "udevRunning"]))
        let diskFields: Set<String> = [
            "name", "devnode", "devno", "transport", "hctl", "scsiDeviceType", "driver", "vendor", "model", "revision",
            "sizeBytes", "logicalBlockSize", "physicalBlockSize", "rotational", "removable", "readOnly", "wwid",
            "kernelWWID", "serial", "designators", "udev", "partitionTable", "fsType", "uuid", "label", "usage",
            "mountpoints", "swap", "partitions", "holders", "slaves", "dmName", "dmUUID", "role", "warnings",
        ]
        let disks = try #require(json["disks"] as? [[String: Any]])
        #expect(disks.count == 4)
        for disk in disks {
            #expect(Set(disk.keys) == diskFields, "\(disk["name"] ?? "?"): \(Set(disk.keys).symmetricDifference(diskFields))")
        }
        let vda = try #require(disks.first { $0["name"] as? String == "vda" })
        #expect(vda["hctl"] is NSNull && vda["wwid"] is NSNull && vda["transport"] as? String == "virtio")
        #expect(vda["driver"] as? String == "virtio_blk")
        let sda = try #require(disks.first { $0["name"] as? String == "sda" })
        let designator = try #require((sda["designators"] as? [[String: Any]])?.first)
        #expect(Set(designator.keys) == ["type", "value", "codeSet", "association", "naaFormat", "protocolIdentifier"])

        let withParts = try mtAgent(["disks", "--json", "--root", fixture("vmware-pvscsi")])
        let part = try #require(((try withParts.json["disks"] as? [[String: Any]])?.first?["partitions"] as? [[String: Any]])?.first)
        #expect(Set(part.keys) == [
            "name", "devnode", "devno", "number", "startBytes", "sizeBytes", "fsType", "uuid", "label", "usage",
            "partUUID", "partLabel", "mountpoints", "swap", "holders",
        ])
        #expect(part["mountpoints"] as? [String] == ["/mnt/retention"])
    }

    @Test func enableUUIDOnCapturedMachinesExitsAsDocumented() throws {
        let off = try mtAgent(["check", "enable-uuid", "--root", fixture("vmware-pvscsi")])
        #expect(off.status == 1)
        #expect(off.stdout.contains("FAIL  enable-uuid:") && off.stdout.contains("sdc (0:0:2:0)"))
        #expect(off.stdout.contains("disk.EnableUUID = TRUE"))
        let cloned = try mtAgent(["check", "enable-uuid", "--json", "--root", fixture("vmware-cloned")])
        #expect(cloned.status == 1)
        let checks = try #require(try cloned.json["checks"] as? [[String: Any]])
        let dup = try #require(checks.first { $0["id"] as? String == "unique-identity" })
        #expect(dup["status"] as? String == "fail")
        #expect(Set((dup["subjects"] as? [[String: Any]] ?? []).compactMap { $0["name"] as? String }) == ["sdb", "sdc"])
        let good = try mtAgent(["check", "enable-uuid", "--root", fixture("vmware-lsi-sas")])
        #expect(good.status == 0)
        #expect(good.stdout.contains("PASS  enable-uuid: all 2 SCSI disks"))
    }
}
