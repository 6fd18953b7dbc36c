import Glibc
import Logging
import MTAgentCore
import Testing

@testable import MTAgentLinux

/// Real loop devices with real filesystems, enumerated by libudev and probed by libblkid.
/// Serialized: they change the machine's set of block devices, which other live tests read.
@Suite("live discovery with loop devices", .tags(.large), .serialized, .enabled(if: runningAsRoot, "needs root for loop devices"))
struct LiveDiscoveryTests {
    static let ext4UUID = "0b7f3c52-5d0e-4c8e-9a57-3e1f2d4c6b10"
    static let xfsUUID = "6f1d2a9e-8b3c-4e7f-a1d2-c3b4a5968778"

    func live() throws -> Inventory {
        try Discovery.forRoot("/", logger: Logger(label: "test")).inventory()
    }

    func disk(_ inv: Inventory, _ devnode: String) throws -> Disk {
        try #require(inv.disks.first { $0.devnode == devnode }, "\(devnode) not in inventory: \(inv.disks.map(\.devnode))")
    }

    @Test func filesystemsOnLoopDevicesAreProbedWithBlkid() throws {
        let s = try Scratch()
        defer { s.cleanup() }
        let ext4 = try s.loopDevice(sizeMiB: 64, name: "ext4")
        try s.run("mkfs.ext4", "-q", "-F", "-L", "mt-retention", "-U", Self.ext4UUID, ext4)
        let xfs = try s.loopDevice(sizeMiB: 320, name: "xfs")
        try s.run("mkfs.xfs", "-q", "-f", "-L", "mt-xfs", "-m", "uuid=\(Self.xfsUUID)", xfs)
        let vfat = try s.loopDevice(sizeMiB: 64, name: "vfat")
        try s.run("mkfs.vfat", "-n", "MTFAT", "-i", "1234ABCD", vfat)
        let blank = try s.loopDevice(sizeMiB: 16, name: "blank")
        let mounted = try s.mount(ext4, at: "mnt-ext4")
        s.settle()

        let inv = try live()
        #expect(inv.host.source == "udev")
        let e = try disk(inv, ext4)
        #expect(e.transport == .loop)
        #expect(e.fsType == "ext4" && e.uuid == Self.ext4UUID && e.label == "mt-retention" && e.usage == "filesystem")
        #expect(e.mountpoints == [mounted])
        #expect(e.sizeBytes == 64 << 20)
        let x = try disk(inv, xfs)
        #expect(x.fsType == "xfs" && x.uuid == Self.xfsUUID && x.label == "mt-xfs")
        let v = try disk(inv, vfat)
        #expect(v.fsType == "vfat" && v.uuid == "1234-ABCD" && v.label == "MTFAT")
        let b = try disk(inv, blank)
        #expect(b.fsType == nil && b.partitionTable == nil && b.role == .free)
    }

    @Test func partitionsCarryTableAndEntryDetails() throws {
        let s = try Scratch()
        defer { s.cleanup() }
        let dev = try s.loopDevice(sizeMiB: 64, name: "gpt")
        let script = """
            label: gpt
            label-id: 4E5C9A2B-1D3F-4A6B-8C7D-9E0F1A2B3C4D
            start=2048, size=20480, type=0FC63DAF-8483-4772-8E79-3D69D8477DE4, uuid=11111111-2222-3333-4444-555555555555, name=data
            start=22528, size=20480, type=0657FD6D-A4AB-43C4-84E5-0933C84B4F4F
            """
        try s.run("bash", "-c", "printf '%s\\n' \"$1\" | sfdisk -q \"$2\"", "sfdisk", script, dev)
        try s.run("partx", "-u", dev)
        s.settle()
        try s.run("mkfs.ext4", "-q", "-F", "-L", "p1", dev + "p1")
        try s.run("mkswap", "-L", "p2swap", dev + "p2")
        s.settle()

        let d = try disk(try live(), dev)
        #expect(d.partitionTable == PartitionTable(type: "gpt", uuid: "4e5c9a2b-1d3f-4a6b-8c7d-9e0f1a2b3c4d"))
        #expect(d.partitions.map(\.name) == [Paths.basename(dev) + "p1", Paths.basename(dev) + "p2"])
        let p1 = d.partitions[0]
        #expect(p1.number == 1 && p1.startBytes == 2048 * 512 && p1.sizeBytes == 20480 * 512)
        #expect(p1.fsType == "ext4" && p1.label == "p1")
        #expect(p1.partUUID == "11111111-2222-3333-4444-555555555555" && p1.partLabel == "data")
        #expect(d.partitions[1].fsType == "swap" && d.partitions[1].label == "p2swap")
        // Not active swap, not mounted: the disk is free.
        #expect(d.role == .free)
    }

    @Test func activeSwapMakesADiskSystem() throws {
        let s = try Scratch()
        defer { s.cleanup() }
        let swapDev = try s.loopDevice(sizeMiB: 32, name: "swap")
        try s.run("mkswap", swapDev)
        try s.run("swapon", swapDev)
        defer { _ = try? s.run("swapoff", swapDev) }
        let sw = try disk(try live(), swapDev)
        #expect(sw.swap && sw.role == .system && sw.fsType == "swap")
    }

    @Test func udevPropertiesAppearWhenUdevdRuns() throws {
        // The control socket file outlives a stopped udevd: ask the daemon itself.
        let udevd = (try? Scratch.udevdAnswers()) == true
        // Scripts/test starts udevd and says so; then its absence is a failure, not a skip.
        if getenv("MT_TEST_EXPECT_UDEVD") != nil { #expect(udevd, "Scripts/test started udevd but /run/udev/control is missing") }
        guard udevd else { return }
        let s = try Scratch()
        defer { s.cleanup() }
        let dev = try s.loopDevice(sizeMiB: 32, name: "udev")
        try s.run("mkfs.ext4", "-q", "-F", "-U", Self.ext4UUID, dev)
        s.reprobe(dev)
        let inv = try live()
        #expect(inv.host.udevRunning)
        let d = try disk(inv, dev)
        #expect(d.udev?.devlinks.contains("/dev/disk/by-uuid/\(Self.ext4UUID)") == true)
    }

    @Test func ioctlGeometryAgreesWithSysfs() throws {
        let s = try Scratch()
        defer { s.cleanup() }
        let dev = try s.loopDevice(sizeMiB: 48, name: "geom")
        let g = try BlockDeviceGeometry.read(path: dev)
        let d = try disk(try live(), dev)
        #expect(g.sizeBytes == 48 << 20)
        #expect(g.sizeBytes == d.sizeBytes && g.logicalBlockSize == d.logicalBlockSize && g.readOnly == d.readOnly)
        #expect(throws: BlockDeviceGeometry.Error.notABlockDevice(s.path("geom.img"))) {
            try BlockDeviceGeometry.read(path: s.path("geom.img"))
        }
    }

    /// `collect` is faithful when discovery on the capture equals discovery live (blkid aside).
    @Test func collectCaptureReadsBackAsTheLiveInventory() throws {
        let s = try Scratch()
        defer { s.cleanup() }
        let dev = try s.loopDevice(sizeMiB: 64, name: "collect")
        try s.run("bash", "-c", "printf 'label: dos\\nstart=2048,size=8192\\nstart=10240\\n' | sfdisk -q \"$1\"", "sfdisk", dev)
        try s.run("partx", "-u", dev)
        s.settle()

        let logger = Logger(label: "test")
        let liveFiles = RootedFiles(root: "/")
        let live = try Discovery(files: liveFiles, enumerator: SysfsEnumerator(files: liveFiles), prober: NoProbing(), logger: logger).inventory()
        let summary = try Collector(logger: logger).capture(into: s.path("capture"))
        let captured = try discover(s.path("capture"))

        #expect(summary.disks == live.disks.count)
        #expect(captured.disks == live.disks)
        #expect(captured.host.hypervisor == live.host.hypervisor && captured.host.kernel == live.host.kernel)
        #expect(captured.disks.contains { $0.devnode == dev && $0.partitions.count == 2 })
    }
}
