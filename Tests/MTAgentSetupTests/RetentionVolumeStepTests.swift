import Glibc
import Logging
import MTAgentCore
import MTAgentLinux
import Testing

@testable import MTAgentSetup

extension Tag {
    @Tag static var large: Self
}

/// The `retention` step on real loop devices, real filesystems and real mounts — with a private
/// fstab, mount point and marker in a temp directory, so the host's /etc/fstab is never touched.
/// Serialized: each test adds and removes loop devices, which discovery enumerates.
@Suite(
    "RetentionVolumeStep on loop devices", .tags(.large), .serialized,
    .enabled(if: geteuid() == 0, "needs root for loop devices and mounts"))
struct RetentionVolumeStepTests {
    /// Retention needs 1 GiB free with no pairs; 1280 MiB leaves room for the filesystem's own.
    static let roomyMiB = 1280

    func blkidUUID(_ device: String) -> String? {
        guard case .success(let probe) = BlkidProber().probe(path: device) else { return nil }
        return probe.uuid
    }

    func probe(_ device: String) throws -> ProbeResult {
        try BlkidProber().probe(path: device).get()
    }

    func failures(_ path: String) throws -> [CheckResult] {
        try RetentionInspector.forRoot("/", logger: quietLogger).check(path: path).filter { $0.status == .fail }
    }

    @Test(arguments: ["ext4", "xfs"])
    func anEmptyDeviceIsFormattedMountedAndListedByUUID(fs: String) throws {
        let s = try RetentionScratch()
        defer { s.cleanup() }
        let dev = try s.loopDevice(sizeMiB: Self.roomyMiB, name: "empty")
        let admin = "# /etc/fstab: static file system information.\n/dev/sda1 / ext4 errors=remount-ro 0 1"  // no final newline
        try s.put(s.fstab, admin)
        let step = s.step()
        let context = try s.context(device: dev, format: fs)

        #expect(try step.check(context) == .needed("format \(dev) as \(fs), mount it at \(s.mountPoint), add it to \(s.fstab) by UUID"))
        let outcome = try step.apply(context)

        let made = try probe(dev)
        let uuid = try #require(made.uuid)
        #expect(made.fsType == fs && made.label == "mt-retention")
        #expect(outcome.summary.contains("formatted \(dev) as \(fs) (UUID \(uuid))"))
        #expect(s.mountSource(s.mountPoint) == dev)
        #expect(s.text(s.fstab) == admin + "\nUUID=\(uuid) \(s.mountPoint) \(fs) defaults,nofail 0 2\n")
        #expect(try failures(s.mountPoint).isEmpty)
        #expect(try step.check(context) == .done)
        #expect(try step.check(s.context(device: dev, format: nil)) == .done, "a re-run without --format is done too")
    }

    @Test func aDeviceHoldingExt4IsRefusedWithoutForceFormat() throws {
        let s = try RetentionScratch()
        defer { s.cleanup() }
        let dev = try s.loopDevice(sizeMiB: 64, name: "used")
        try s.run("mkfs.ext4", "-q", "-F", dev)
        let before = try #require(blkidUUID(dev))
        let step = s.step()
        let context = try s.context(device: dev, format: "ext4")

        #expect(try step.check(context) == .blocked("\(dev) holds ext4 (UUID \(before)); refusing to format it — pass --force-format \(dev) to destroy it"))
        #expect(throws: (any Error).self) { try step.apply(context) }
        #expect(blkidUUID(dev) == before, "the device was changed")
        #expect(s.mountSource(s.mountPoint) == nil)
        #expect(s.text(s.fstab) == nil, "fstab was written")
    }

    @Test func forceFormatNamingTheDeviceFormatsItWithANewUUID() throws {
        let s = try RetentionScratch()
        defer { s.cleanup() }
        let dev = try s.loopDevice(sizeMiB: Self.roomyMiB, name: "forced")
        try s.run("mkfs.ext4", "-q", "-F", dev)
        let before = try #require(blkidUUID(dev))
        let step = s.step()
        let context = try s.context(device: dev, format: "xfs", force: dev)

        #expect(
            try step.check(context)
                == .needed("wipe \(dev) with wipefs -a, destroying ext4 (UUID \(before)), and format it as xfs, mount it at \(s.mountPoint), add it to \(s.fstab) by UUID"))
        _ = try step.apply(context)
        let after = try probe(dev)
        let uuid = try #require(after.uuid)
        #expect(uuid != before)
        #expect(after.fsType == "xfs")
        #expect(s.text(s.fstab) == "UUID=\(uuid) \(s.mountPoint) xfs defaults,nofail 0 2\n")
        #expect(s.mountSource(s.mountPoint) == dev)
        // Re-running the same command line does not format it again.
        #expect(try step.check(context) == .done)
    }

    @Test func forceFormatNamingAnotherDeviceStillRefuses() throws {
        let s = try RetentionScratch()
        defer { s.cleanup() }
        let dev = try s.loopDevice(sizeMiB: 64, name: "used")
        let other = try s.loopDevice(sizeMiB: 64, name: "other")
        try s.run("mkfs.ext4", "-q", "-F", dev)
        let before = try #require(blkidUUID(dev))
        let step = s.step()
        let context = try s.context(device: dev, format: "ext4", force: other)

        guard case .blocked(let why) = try step.check(context) else {
            Issue.record("not blocked")
            return
        }
        #expect(why.contains("refusing to format it — pass --force-format \(dev) to destroy it (--force-format names \(other), not \(dev))"))
        #expect(throws: (any Error).self) { try step.apply(context) }
        #expect(blkidUUID(dev) == before)
    }

    @Test func aVfatDeviceIsBlockedUnlessForced() throws {
        let s = try RetentionScratch()
        defer { s.cleanup() }
        let dev = try s.loopDevice(sizeMiB: Self.roomyMiB, name: "vfat")
        try s.run("mkfs.vfat", "-n", "STICK", dev)
        let before = try #require(blkidUUID(dev))
        let step = s.step()

        guard case .blocked(let plain) = try step.check(s.context(device: dev, format: nil)) else {
            Issue.record("vfat without --format is not blocked")
            return
        }
        #expect(plain.contains("\(dev) holds vfat (UUID \(before), label STICK), which cannot hold the journal: it must be reformatted"))
        #expect(plain.contains("--format ext4 --force-format \(dev)"))
        guard case .blocked(let unforced) = try step.check(s.context(device: dev, format: "ext4")) else {
            Issue.record("vfat with --format but without --force-format is not blocked")
            return
        }
        #expect(unforced.contains("refusing to format it — pass --force-format \(dev) to destroy it"))
        #expect(blkidUUID(dev) == before)

        let forced = try s.context(device: dev, format: "ext4", force: dev)
        _ = try step.apply(forced)
        #expect(try probe(dev).fsType == "ext4")
        #expect(try step.check(forced) == .done)
    }

    @Test func anEmptyDeviceWithoutFormatIsBlocked() throws {
        let s = try RetentionScratch()
        defer { s.cleanup() }
        let dev = try s.loopDevice(sizeMiB: 32, name: "empty")
        #expect(
            try s.step().check(s.context(device: dev, format: nil))
                == .blocked("\(dev) holds no filesystem: pass --format ext4 (or --format xfs) to format it"))
    }

    @Test func aDeviceMountedElsewhereIsBlocked() throws {
        let s = try RetentionScratch()
        defer { s.cleanup() }
        let dev = try s.loopDevice(sizeMiB: 64, name: "busy")
        try s.run("mkfs.ext4", "-q", "-F", dev)
        let elsewhere = try s.mount(dev, at: "elsewhere")
        guard case .blocked(let why) = try s.step().check(s.context(device: dev, format: "ext4", force: dev)) else {
            Issue.record("a mounted device is not blocked")
            return
        }
        #expect(why.hasPrefix("\(dev) is mounted at \(elsewhere) (ext4)"))
    }

    /// A partition table counts as content; forced, it is wiped. A volume too small for retention
    /// fails the step after it is made, and then checks as blocked with the rule's reason.
    @Test func aPartitionedDeviceIsWipedOnlyWhenForcedAndATooSmallVolumeFails() throws {
        let s = try RetentionScratch()
        defer { s.cleanup() }
        let dev = try s.loopDevice(sizeMiB: 64, name: "gpt")
        try s.run("sh", "-c", "echo 'label: gpt' | sfdisk -q \(dev)")
        let step = s.step()
        #expect(
            try step.check(s.context(device: dev, format: "ext4"))
                == .blocked("\(dev) holds a gpt partition table; refusing to format it — pass --force-format \(dev) to destroy it"))
        #expect(try probe(dev).partitionTable?.type == "gpt")

        let forced = try s.context(device: dev, format: "ext4", force: dev)
        #expect(throws: (any Error).self) { try step.apply(forced) }
        let made = try probe(dev)
        #expect(made.fsType == "ext4" && made.partitionTable == nil)
        guard case .blocked(let why) = try step.check(forced) else {
            Issue.record("a volume too small is not blocked")
            return
        }
        #expect(why.contains("it needs 1.0 GiB"))
    }

    @Test func aConflictingFstabLineIsBlocked() throws {
        let s = try RetentionScratch()
        defer { s.cleanup() }
        let dev = try s.loopDevice(sizeMiB: 32, name: "conflict")
        try s.put(s.fstab, "LABEL=old \(s.mountPoint) ext4 defaults 0 2\n")
        #expect(
            try s.step().check(s.context(device: dev, format: "ext4"))
                == .blocked("\(s.fstab) line 1 already mounts LABEL=old at \(s.mountPoint): remove or comment out that line, then run setup again (it adds a UUID= line for \(dev))"))
    }

    /// A run killed after mkfs: the filesystem setup made is used, not refused and not made again.
    @Test func aFilesystemSetupMadeIsMountedAsItIs() throws {
        let s = try RetentionScratch()
        defer { s.cleanup() }
        let dev = try s.loopDevice(sizeMiB: 64, name: "resumed")
        try s.run("mkfs.ext4", "-q", "-F", "-L", "mt-retention", dev)
        let uuid = try #require(blkidUUID(dev))
        #expect(
            try s.step().check(s.context(device: dev, format: "ext4"))
                == .needed("mount \(dev) (ext4, UUID \(uuid)) at \(s.mountPoint) as it is (not formatted), add it to \(s.fstab) by UUID"))
    }

    @Test func revertUnmountsAndLeavesTheFilesystem() throws {
        let s = try RetentionScratch()
        defer { s.cleanup() }
        let dev = try s.loopDevice(sizeMiB: Self.roomyMiB, name: "revert")
        let step = s.step()
        let context = try s.context(device: dev, format: "ext4")
        _ = try step.apply(context)
        let uuid = try #require(blkidUUID(dev))
        #expect(s.text(s.marker)?.contains("mount_point=\(s.mountPoint)") == true)

        // Unmounted by hand: the fstab line is there, so only the mount is needed — and no second line.
        try s.run("umount", s.mountPoint)
        #expect(try step.check(context) == .needed("mount \(dev) (ext4, UUID \(uuid)) at \(s.mountPoint) by its \(s.fstab) line"))
        _ = try step.apply(context)
        #expect(s.text(s.fstab) == "UUID=\(uuid) \(s.mountPoint) ext4 defaults,nofail 0 2\n")
        #expect(s.mountSource(s.mountPoint) == dev)

        try step.revert(context)
        try s.files.restoreAll()  // what the engine does after the step's revert
        #expect(s.mountSource(s.mountPoint) == nil)
        #expect(blkidUUID(dev) == uuid, "revert must not touch the filesystem")
        #expect(s.text(s.fstab) == nil && s.text(s.marker) == nil)
        try step.revert(context)  // again, as a killed revert's re-run does: nothing to unmount
    }

    /// A volume the admin mounted before setup: setup only adds the fstab line, and revert leaves the mount.
    @Test func revertLeavesAMountSetupDidNotMake() throws {
        let s = try RetentionScratch()
        defer { s.cleanup() }
        let dev = try s.loopDevice(sizeMiB: Self.roomyMiB, name: "admin")
        try s.run("mkfs.ext4", "-q", "-F", dev)
        let uuid = try #require(blkidUUID(dev))
        _ = try s.mount(dev, at: "retention")
        let step = s.step()
        let context = try s.context(device: dev, format: nil)
        #expect(try step.check(context) == .needed("add \(dev) (ext4, UUID \(uuid)), mounted at \(s.mountPoint), to \(s.fstab) by UUID"))
        _ = try step.apply(context)
        #expect(try step.check(context) == .done)
        #expect(s.text(s.marker) == nil)
        try step.revert(context)
        #expect(s.mountSource(s.mountPoint) == dev)
    }

    @Test func withoutADeviceTheRetentionPathIsValidated() throws {
        let s = try RetentionScratch()
        defer { s.cleanup() }
        try s.run("mkdir", "-p", s.mountPoint)
        let step = RetentionVolumeStep(fstabPath: s.fstab, markerPath: s.marker, live: true)
        var options = SetupOptions()
        options.retentionPath = s.mountPoint
        guard case .blocked(let why) = try step.check(s.context(options)) else {
            Issue.record("a plain directory is not blocked")
            return
        }
        let lines = why.split(separator: "\n")
        #expect(lines.contains { $0.contains("\(s.mountPoint) is a directory on the system volume") && $0.contains(" — mount a dedicated volume at \(s.mountPoint)") })
        #expect(lines.last?.contains("--retention-device DEV --format ext4") == true)

        let dev = try s.loopDevice(sizeMiB: Self.roomyMiB, name: "mounted")
        try s.run("mkfs.xfs", "-q", "-f", dev)
        _ = try s.mount(dev, at: "retention")
        #expect(try step.check(s.context(options)) == .done)
        #expect(s.text(s.fstab) == nil)
    }

    @Test func underAnotherRootNothingRunsOnThisHost() throws {
        let runner = SetupFakeRunner()
        let files = RetentionPrivateFiles(root: "/nonexistent/mt-agent-image", directory: "/nonexistent/mt-agent-image")
        var options = SetupOptions()
        options.retentionDevice = "/dev/sdc"
        options.format = "ext4"
        let context = SetupContext(
            files: files, system: RootedFiles(root: files.root), runner: runner,
            inventory: Inventory(host: Host(), disks: []), options: options, logger: quietLogger, systemdRunning: false)
        guard case .notApplicable(let why) = try RetentionVolumeStep().check(context) else {
            Issue.record("not 'not applicable' under --root")
            return
        }
        #expect(why.contains("mkfs.ext4 -F -L mt-retention /dev/sdc"))
        #expect(why.contains("mount /mnt/retention"))
        #expect(runner.commands.isEmpty)

        // Without a device, an image's retention volume is left to `check retention` on the machine.
        options.retentionDevice = nil
        options.format = nil
        var noDevice = context
        noDevice.options = options
        #expect(try RetentionVolumeStep().check(noDevice) == .notApplicable("the retention volume is checked on the machine itself: mt-agent check retention /mnt/retention"))
    }
}

// MARK: - Support

/// Temp dir, loop devices and mounts of one test, all removed by `cleanup()` (called from
/// `defer`, so also when the test fails) — including any mount the step made under the dir.
final class RetentionScratch {
    let runner = ProcessRunner()
    let directory: String
    let files: RetentionPrivateFiles
    private var undo: [() -> Void] = []

    init() throws {
        var template = Array("/tmp/mt-agent-retstep.XXXXXX".utf8CString)
        guard let dir = mkdtemp(&template) else { throw SetupTestError("mkdtemp failed") }
        directory = String(cString: dir)
        files = RetentionPrivateFiles(root: "/", directory: directory)
        let path = directory
        undo.append { [runner] in _ = try? runner.run(["rm", "-rf", "--one-file-system", path]) }
    }

    var fstab: String { path("etc/fstab") }
    var mountPoint: String { path("retention") }
    var marker: String { path("var/lib/mt-agent/retention-mount") }

    func path(_ name: String) -> String { directory + "/" + name }

    func cleanup() {
        // Mounts under the dir, innermost (last mounted) first, before the loop devices go.
        let mounts = MountInfo.parse(RootedFiles(root: "/").text("/proc/self/mountinfo") ?? "")
        for m in mounts.reversed() where m.mountPoint.hasPrefix(directory + "/") {
            _ = try? runner.run(["umount", "-l", m.mountPoint])
        }
        while let step = undo.popLast() { step() }
    }

    @discardableResult
    func run(_ argv: String...) throws -> String {
        let r = try runner.run(argv)
        guard r.status == 0 else { throw SetupTestError("\(argv.joined(separator: " ")): \(r.stderr)") }
        return r.stdout
    }

    func loopDevice(sizeMiB: Int, name: String) throws -> String {
        let image = path(name + ".img")
        try run("truncate", "-s", "\(sizeMiB)M", image)
        let device = try run("losetup", "--find", "--show", image).trimmingWhitespace()
        undo.append { [runner] in _ = try? runner.run(["losetup", "-d", device]) }
        return device
    }

    func mount(_ device: String, at name: String) throws -> String {
        let point = path(name)
        try run("mkdir", "-p", point)
        try run("mount", device, point)
        return point
    }

    /// The device mounted at `point` (the top mount), or nil.
    func mountSource(_ point: String) -> String? {
        MountInfo.parse(RootedFiles(root: "/").text("/proc/self/mountinfo") ?? "").last { $0.mountPoint == point }?.source
    }

    func put(_ path: String, _ text: String) throws {
        try run("mkdir", "-p", Paths.dirname(path))
        try HostFile.write(path, Array(text.utf8), mode: 0o644)
    }

    func text(_ path: String) -> String? {
        RootedFiles(root: "/").read(path).map { String(decoding: $0, as: UTF8.self) }
    }

    func step() -> RetentionVolumeStep {
        RetentionVolumeStep(fstabPath: fstab, mountPoint: mountPoint, markerPath: marker, live: true)
    }

    func context(device: String, format: String?, force: String? = nil) throws -> SetupContext {
        var options = SetupOptions()
        options.retentionDevice = device
        options.format = format
        options.forceFormatDevice = force
        return try context(options)
    }

    func context(_ options: SetupOptions) throws -> SetupContext {
        SetupContext(
            files: files, system: RootedFiles(root: "/"), runner: runner,
            inventory: try Discovery.forRoot("/", logger: quietLogger).inventory(), options: options, logger: quietLogger,
            systemdRunning: false)
    }
}

/// The machine's files at `/`, but only those under one temp directory may be written (anything
/// else fails the test); the first content of each written path is kept so that `restoreAll()`
/// puts it back as the engine's revert does.
final class RetentionPrivateFiles: SetupFileSystem, @unchecked Sendable {
    let root: String
    let directory: String
    private var originals: [(path: String, bytes: [UInt8]?)] = []

    init(root: String, directory: String) {
        self.root = root
        self.directory = directory
    }

    private func host(_ path: String) -> String { root == "/" ? path : root + path }

    func read(_ path: String) -> [UInt8]? { RootedFiles(root: root).read(path) }
    func exists(_ path: String) -> Bool { RootedFiles(root: root).exists(path) }

    func write(_ path: String, _ bytes: [UInt8], mode: UInt32) throws {
        try remember(path)
        let target = host(path)
        for dir in HostFile.missingParents(of: target) { try HostFile.makeDirectory(dir) }
        try HostFile.write(target, bytes, mode: mode)
    }

    func remove(_ path: String) throws {
        try remember(path)
        try HostFile.remove(host(path))
    }

    private func remember(_ path: String) throws {
        guard host(path).hasPrefix(directory + "/") else {
            throw SetupTestError("the step wrote \(path), outside the test's directory \(directory)")
        }
        if !originals.contains(where: { $0.path == path }) { originals.append((path, read(path))) }
    }

    func restoreAll() throws {
        for (path, bytes) in originals.reversed() {
            if let bytes { try HostFile.write(host(path), bytes, mode: 0o644) } else { try HostFile.remove(host(path)) }
        }
        originals = []
    }
}
