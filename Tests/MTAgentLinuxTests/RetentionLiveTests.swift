import Glibc
import Logging
import MTAgentCore
import Testing

@testable import MTAgentLinux

/// `check retention` against real loop devices with real filesystems, mounts and freezes.
/// Serialized: each test adds and removes loop devices, which discovery enumerates.
@Suite("retention on loop devices", .tags(.large), .serialized, .enabled(if: runningAsRoot, "needs root for loop devices"))
struct RetentionLiveTests {
    /// 1 GiB free is what retention needs with no pairs; 1280 MiB leaves room for the filesystem's own.
    static let roomyMiB = 1280

    func inspector(timeout: Duration = RetentionInspector.defaultProbeTimeout) -> RetentionInspector {
        RetentionInspector.forRoot("/", logger: Logger(label: "test"), probeTimeout: timeout)
    }

    func results(_ path: String, pairs: Int = 0, targets: [String] = [], timeout: Duration = .seconds(5)) throws -> [String: CheckResult] {
        let checks = try inspector(timeout: timeout).check(path: path, pairs: pairs, targets: targets)
        return Dictionary(checks.map { (String($0.id.dropFirst("retention.".count)), $0) }, uniquingKeysWith: { a, _ in a })
    }

    func probeFiles(in directory: String) -> [String] {
        (RootedFiles(root: "/").list(directory) ?? []).filter { $0.hasPrefix(".mt-agent-write-probe.") }
    }

    /// Live probe processes (the shell and its dd) writing into `directory`.
    func probeProcesses(in directory: String) -> [String] {
        let files = RootedFiles(root: "/")
        return (files.list("/proc") ?? []).filter { $0.allSatisfy(\.isNumber) }.filter { pid in
            let argv = String(decoding: files.read("/proc/\(pid)/cmdline") ?? [], as: UTF8.self)
            return argv.contains(directory + "/.mt-agent-write-probe.")
        }
    }

    @Test(arguments: ["ext4", "xfs"])
    func aDedicatedMountedVolumePasses(fs: String) throws {
        let s = try Scratch()
        defer { s.cleanup() }
        let dev = try s.loopDevice(sizeMiB: Self.roomyMiB, name: fs)
        if fs == "ext4" { try s.run("mkfs.ext4", "-q", "-F", dev) } else { try s.run("mkfs.xfs", "-q", "-f", dev) }
        let point = try s.mount(dev, at: "retention")

        let r = try results(point)
        #expect(r.values.allSatisfy { $0.status == .pass }, "\(r.values.filter { $0.status != .pass })")
        #expect(r["filesystem"]?.message == "\(point) is \(fs)")
        #expect(r["mounted"]?.subjects.map(\.name) == [Paths.basename(dev)])
        #expect(r["write-probe"]?.message.contains("write + fsync") == true)
        #expect(probeFiles(in: point).isEmpty, "the probe file was left behind")

        // The same volume named by its device, and as an assigned replication target.
        let byDevice = try results(dev, targets: [Paths.basename(dev)])
        #expect(byDevice["mounted"]?.message == "\(dev) is mounted at \(point)")
        #expect(byDevice["replication-target"]?.status == .fail)
        #expect(byDevice["filesystem"]?.status == .pass)
    }

    /// This kernel has no vfat driver: the image cannot be mounted, and libblkid must still say FAT.
    @Test func aVfatDeviceFailsAsFATByBlkid() throws {
        let s = try Scratch()
        defer { s.cleanup() }
        let dev = try s.loopDevice(sizeMiB: 64, name: "vfat")
        try s.run("mkfs.vfat", "-n", "RETENTION", dev)

        let r = try results(dev)
        #expect(r["filesystem"]?.status == .fail)
        #expect(r["filesystem"]?.message == "retention volume \(dev) is vfat; FAT/FAT32 volumes cannot hold the journal — format it ext4 or xfs")
        #expect(r["filesystem"]?.fix?.contains("mkfs.ext4 \(dev)") == true)
        #expect(r["mounted"]?.status == .fail)
        #expect(r["write-probe"]?.status == .skip)
    }

    @Test func anEmptyDeviceFailsAndSaysToFormatIt() throws {
        let s = try Scratch()
        defer { s.cleanup() }
        let dev = try s.loopDevice(sizeMiB: 32, name: "empty")
        let r = try results(dev)
        #expect(r["filesystem"]?.status == .fail)
        #expect(r["filesystem"]?.message == "\(dev) has no filesystem")
        #expect(r["filesystem"]?.fix?.contains("format it: mkfs.ext4 \(dev)") == true)
        #expect(r["mounted"]?.message == "\(dev) is not mounted")
    }

    @Test func aReadOnlyMountFails() throws {
        let s = try Scratch()
        defer { s.cleanup() }
        let dev = try s.loopDevice(sizeMiB: Self.roomyMiB, name: "ro")
        try s.run("mkfs.ext4", "-q", "-F", dev)
        let point = try s.mount(dev, at: "ro", options: "ro")
        let r = try results(point)
        #expect(r["writable"]?.status == .fail)
        #expect(r["writable"]?.message.contains("mounted read-only") == true)
        #expect(r["write-probe"]?.status == .skip)
        #expect(r["mounted"]?.status == .pass)
    }

    /// The write probe on a frozen filesystem never completes; the check gives up after the
    /// timeout, and the probe finishes and removes its file once the filesystem is thawed.
    @Test func aFrozenVolumeFailsWithinTheTimeoutAndLeavesNothingBehind() throws {
        let s = try Scratch()
        defer { s.cleanup() }
        let dev = try s.loopDevice(sizeMiB: Self.roomyMiB, name: "frozen")
        try s.run("mkfs.ext4", "-q", "-F", dev)
        let point = try s.mount(dev, at: "frozen")
        try s.run("fsfreeze", "-f", point)
        // Runs before `s.cleanup()` (defers run in reverse): a frozen filesystem never unmounts.
        var thawed = false
        defer { if !thawed { _ = try? s.runner.run(["fsfreeze", "-u", point]) } }

        let clock = ContinuousClock()
        let start = clock.now
        let outcome = LiveVolumes().writeProbe(in: point, timeout: .seconds(1))
        let probeTook = clock.now - start
        #expect(outcome == .timedOut(.seconds(1)))
        #expect(probeTook >= .seconds(1) && probeTook < .seconds(2), "probe took \(probeTook)")

        let checkStart = clock.now
        let r = try results(point, timeout: .seconds(1))
        let checkTook = clock.now - checkStart
        #expect(r["write-probe"]?.status == .fail)
        #expect(r["write-probe"]?.message.contains("did not finish within 1 s") == true)
        #expect(r["write-probe"]?.fix?.contains("fsfreeze -u \(point)") == true)
        #expect(checkTook < .seconds(10), "check took \(checkTook)")
        #expect(r["writable"]?.status == .pass, "frozen is not read-only")

        // Both abandoned probes are still there, stuck in the kernel until the thaw.
        #expect(probeProcesses(in: point).count >= 2)

        try s.run("fsfreeze", "-u", point)
        thawed = true
        // They finish on their own after the thaw and remove their files.
        let deadline = clock.now + .seconds(10)
        while clock.now < deadline && !probeProcesses(in: point).isEmpty { usleep(50_000) }
        #expect(probeProcesses(in: point).isEmpty, "probes still running 10 s after the thaw")
        #expect(probeFiles(in: point).isEmpty, "probe files left after the thaw: \(probeFiles(in: point))")
        #expect(try results(point)["write-probe"]?.status == .pass)
    }

    @Test func theRootFilesystemIsTheSystemVolume() throws {
        let r = try results("/")
        #expect(r["system-volume"]?.status == .fail)
        #expect(r["system-volume"]?.message.contains("system volume") == true)
        #expect(r["cache-volume"]?.status == .fail, "the test binary and /var/lib/mt-agent are on /")
        #expect(r["write-probe"]?.message == "not run: nothing is written to the system volume")
    }

    @Test func aNearlyFullVolumeFailsFreeSpace() throws {
        let s = try Scratch()
        defer { s.cleanup() }
        let dev = try s.loopDevice(sizeMiB: Self.roomyMiB, name: "full")
        try s.run("mkfs.ext4", "-q", "-F", dev)
        let point = try s.mount(dev, at: "full")
        #expect(try results(point)["free-space"]?.status == .pass)
        #expect(try results(point, pairs: 4)["free-space"]?.status == .fail, "2 GiB needed for 4 pairs")

        try s.run("fallocate", "-l", "600M", point + "/filler")
        let r = try results(point)
        #expect(r["free-space"]?.status == .fail)
        #expect(r["free-space"]?.message.contains("free; it needs 1.0 GiB (256 MiB × (0 pairs + 4))") == true)
        #expect(r["capacity"]?.status == .pass)
    }

    @Test func aDirectoryThatIsNotAMountPointFails() throws {
        let s = try Scratch()
        defer { s.cleanup() }
        try s.run("mkdir", "-p", s.path("retention"))
        let onRoot = try results(s.path("retention"))
        #expect(onRoot["mounted"]?.status == .fail)
        #expect(onRoot["mounted"]?.message.contains("is a directory on the system volume") == true)
        #expect(onRoot["mounted"]?.fix?.contains("mount a dedicated volume at \(s.path("retention"))") == true)
        #expect(onRoot["write-probe"]?.status == .skip)

        let dev = try s.loopDevice(sizeMiB: 64, name: "data")
        try s.run("mkfs.ext4", "-q", "-F", dev)
        let data = try s.mount(dev, at: "data")
        try s.run("mkdir", "-p", data + "/retention")
        let onData = try results(data + "/retention")
        #expect(onData["mounted"]?.status == .fail)
        #expect(onData["mounted"]?.message == "\(data)/retention is a directory on \(data) (\(dev)), not a volume of its own")
        #expect(onData["system-volume"]?.status == .pass)
    }

    @Test func aMissingPathCannotBeChecked() throws {
        #expect(throws: RetentionError.missing("/nonexistent/mt-agent-retention")) {
            try inspector().check(path: "/nonexistent/mt-agent-retention")
        }
        #expect(throws: RetentionError.notADirectoryOrDevice("/proc/self/mountinfo")) {
            try inspector().check(path: "/proc/self/mountinfo")
        }
    }
}

/// The inspector's wiring on a captured VMware guest (/mnt/retention on sda1), with the live
/// side described by a fake: mountinfo and the inventory come from the capture under `--root`.
@Suite("retention inspector on a captured machine", .tags(.medium))
struct RetentionInspectorTests {
    final class FakeVolumes: VolumeProbing, @unchecked Sendable {
        var probed: [String] = []
        let space = VolumeSpace(totalBytes: 16 << 30, availableBytes: 15 << 30, readOnly: false)

        func kind(of hostPath: String) -> PathKind { LiveVolumes().kind(of: hostPath) }
        func space(of hostPath: String) throws -> VolumeSpace { space }
        func writeProbe(in hostDirectory: String, timeout: Duration) -> WriteProbeOutcome {
            probed.append(hostDirectory)
            return .succeeded(.milliseconds(2))
        }
    }

    @Test func theMountedPartitionIsFoundByItsDeviceNumber() throws {
        let s = try Scratch()
        defer { s.cleanup() }
        let root = s.path("root")
        try s.run("cp", "-a", CapturedMachineTests.fixtures.appendingPathComponent("vmware-pvscsi").path, root)
        try s.run("mkdir", "-p", root + "/mnt/retention")
        let fake = FakeVolumes()
        let inspector = RetentionInspector(
            discovery: Discovery(files: RootedFiles(root: root), enumerator: SysfsEnumerator(files: RootedFiles(root: root)),
                                 prober: NoProbing(), logger: Logger(label: "test")),
            volumes: fake, binaryPath: nil)

        let facts = try inspector.facts(path: "/mnt/retention", pairs: 0, targets: [])
        #expect(facts.directory == "/mnt/retention")
        #expect(facts.cacheLocations == [CacheLocation(what: "state", path: "/var/lib/mt-agent")])
        #expect(fake.probed == [root + "/mnt/retention"])
        let results = RetentionRules.evaluate(facts)
        #expect(results.allSatisfy { $0.status == .pass }, "\(results.filter { $0.status != .pass })")
        let subject = try #require(results.first?.subjects.first)
        #expect(subject.name == "sda1" && subject.hctl == "0:0:0:0" && subject.wwid == "36000c29a1b2c3d4e")

        let asTarget = try inspector.check(path: "/mnt/retention", targets: ["sdb, /dev/sda"])
        #expect(asTarget.first { $0.id == "retention.replication-target" }?.status == .fail)

        #expect(throws: RetentionError.missing("/mnt/elsewhere")) { try inspector.check(path: "/mnt/elsewhere") }
    }
}
