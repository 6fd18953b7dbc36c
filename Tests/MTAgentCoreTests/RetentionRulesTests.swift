import Testing

@testable import MTAgentCore

/// A machine with / on sda1, /boot on sda2 and the retention volume on sdb1; sdc and sdd spare.
enum RetentionMachine {
    static let root = MountEntry(devno: "8:1", mountPoint: "/", fsType: "ext4", source: "/dev/sda1", readOnly: false)
    static let boot = MountEntry(devno: "8:2", mountPoint: "/boot", fsType: "ext4", source: "/dev/sda2", readOnly: false)
    static let retention = MountEntry(devno: "8:17", mountPoint: "/mnt/retention", fsType: "ext4", source: "/dev/sdb1", readOnly: false)
    static let mounts = [root, boot, retention]

    static func disk(_ name: String, devno: String, partitions: [(String, String)] = [], role: Disk.Role = .free) -> Disk {
        var d = Disk(name: name, devnode: "/dev/\(name)", devno: devno, transport: .scsi)
        d.hctl = "0:0:\(name.last!.asciiValue! - 97):0"
        d.wwid = "36000c29\(name)"
        d.role = role
        d.partitions = partitions.map { Partition(name: $0.0, devnode: "/dev/\($0.0)", devno: $0.1) }
        return d
    }

    static var disks: [Disk] {
        [
            disk("sda", devno: "8:0", partitions: [("sda1", "8:1"), ("sda2", "8:2")], role: .system),
            disk("sdb", devno: "8:16", partitions: [("sdb1", "8:17")]),
            disk("sdc", devno: "8:32"),
            disk("sdd", devno: "8:48"),
        ]
    }

    static let plenty = VolumeSpace(totalBytes: 20 << 30, availableBytes: 19 << 30, readOnly: false)

    /// Everything passes: a mounted ext4 of its own with room, writable, probed.
    static func facts(
        directory: String? = "/mnt/retention", mounts: [MountEntry] = mounts, disks: [Disk] = disks,
        space: VolumeSpace? = plenty, probe: WriteProbeOutcome? = .succeeded(.milliseconds(3))
    ) -> RetentionFacts {
        RetentionFacts(
            named: directory ?? "/dev/sdc", directory: directory, mounts: mounts, disks: disks, space: space,
            writeProbe: probe,
            cacheLocations: [
                CacheLocation(what: "install", path: "/usr/bin/mt-agent"), CacheLocation(what: "state", path: "/var/lib/mt-agent"),
            ])
    }

    /// The named, unmounted device /dev/sdc with what libblkid found on it.
    static func device(_ blkid: ProbeResult?, error: String? = nil) -> RetentionFacts {
        var f = facts(directory: nil, space: nil, probe: nil)
        f.named = "/dev/sdc"
        f.deviceDevno = "8:32"
        f.blkid = blkid
        f.blkidError = error
        return f
    }
}

@Suite("retention rules", .tags(.small))
struct RetentionRulesTests {
    typealias M = RetentionMachine

    func result(_ rule: String, _ facts: RetentionFacts) throws -> CheckResult {
        try #require(RetentionRules.evaluate(facts).first { $0.id == "retention.\(rule)" })
    }

    @Test func aDedicatedHealthyVolumePassesEveryRule() {
        let results = RetentionRules.evaluate(M.facts())
        #expect(results.map(\.id) == [
            "retention.mounted", "retention.filesystem", "retention.system-volume", "retention.cache-volume",
            "retention.replication-target", "retention.holders", "retention.capacity", "retention.free-space",
            "retention.writable", "retention.write-probe",
        ])
        #expect(results.allSatisfy { $0.status == .pass }, "\(results.filter { $0.status != .pass })")
        #expect(CheckReport(checks: results).exitCode == 0)
        #expect(results[0].subjects.first?.name == "sdb1" && results[0].subjects.first?.hctl == "0:0:1:0")
        #expect(RetentionRules.probeSkipReason(M.facts()) == nil)
    }

    // MARK: mounted

    @Test func aDirectoryOnTheSystemVolumeIsNotAVolumeOfItsOwn() throws {
        let f = M.facts(mounts: [M.root, M.boot])
        let r = try result("mounted", f)
        #expect(r.status == .fail)
        #expect(r.message.contains("system volume") && r.message.contains("not a volume of its own"))
        #expect(r.fix?.contains("mount a dedicated volume at /mnt/retention") == true)
        #expect(try result("system-volume", f).status == .fail)
        #expect(RetentionRules.probeSkipReason(f) == "/mnt/retention is not a volume of its own")
        #expect(try result("write-probe", M.facts(mounts: [M.root], probe: nil)).status == .skip)
    }

    @Test func aDirectoryOnAnotherVolumeNamesThatVolume() throws {
        var data = M.retention
        data.mountPoint = "/data"
        let r = try result("mounted", M.facts(directory: "/data/retention", mounts: [M.root, data]))
        #expect(r.status == .fail)
        #expect(r.message.contains("on /data (/dev/sdb1)") && !r.message.contains("system volume"))
        #expect(r.fix?.contains("at /data/retention") == true)
    }

    @Test func theLongestMountPrefixWinsAndTheTopOfAStackToo() {
        let mnt = MountEntry(devno: "8:33", mountPoint: "/mnt", fsType: "xfs", source: "/dev/sdc1", readOnly: false)
        let lookalike = MountEntry(devno: "8:49", mountPoint: "/mnt/retention2", fsType: "xfs", source: "/dev/sdd1", readOnly: false)
        let mounts = [M.root, mnt, M.retention, lookalike]
        #expect(RetentionVolume.mount(containing: "/mnt/retention/journal", in: mounts) == M.retention)
        #expect(RetentionVolume.mount(containing: "/mnt/retention", in: mounts) == M.retention)
        #expect(RetentionVolume.mount(containing: "/mnt/other", in: mounts) == mnt)
        #expect(RetentionVolume.mount(containing: "/mntx", in: mounts) == M.root)
        var over = M.retention
        over.devno = "8:49"
        #expect(RetentionVolume.mount(containing: "/mnt/retention", in: mounts + [over]) == over)
    }

    @Test func aNamedDeviceMustBeMounted() throws {
        let r = try result("mounted", M.device(ProbeResult(fsType: "ext4", usage: "filesystem")))
        #expect(r.status == .fail && r.message == "/dev/sdc is not mounted")
        #expect(r.fix?.contains("mount /dev/sdc /mnt/retention") == true)
        #expect(r.subjects.map(\.name) == ["sdc"])
        let f = M.device(ProbeResult(fsType: "ext4", usage: "filesystem"))
        for rule in ["capacity", "free-space", "writable", "write-probe"] {
            #expect(try result(rule, f).status == .skip, "\(rule)")
        }
        #expect(try result("filesystem", f).status == .pass)

        var mounted = M.facts()
        mounted.named = "/dev/sdb1"
        mounted.deviceDevno = "8:17"
        #expect(try result("mounted", mounted).status == .pass)
        #expect(RetentionRules.mountPoint(ofDevno: "8:17", in: M.mounts) == "/mnt/retention")
    }

    // MARK: filesystem

    @Test(arguments: ["vfat", "msdos", "exfat"])
    func fatFromTheMountFails(type: String) throws {
        var fat = M.retention
        fat.fsType = type
        let r = try result("filesystem", M.facts(mounts: [M.root, fat]))
        #expect(r.status == .fail)
        #expect(r.message.hasPrefix("retention volume /mnt/retention is \(type); "))
        #expect(r.message.hasSuffix("volumes cannot hold the journal — format it ext4 or xfs"))
        #expect(r.fix?.contains("mkfs.ext4 /dev/sdb1") == true)
    }

    @Test func fatFoundByBlkidOnANamedDeviceFails() throws {
        let r = try result("filesystem", M.device(ProbeResult(fsType: "vfat", uuid: "1234-ABCD", usage: "filesystem")))
        #expect(r.status == .fail)
        #expect(r.message == "retention volume /dev/sdc is vfat; FAT/FAT32 volumes cannot hold the journal — format it ext4 or xfs")
        #expect(r.subjects.map(\.name) == ["sdc"])
    }

    @Test func exfatThroughFuseIsCaughtByTheInventoryProbe() throws {
        var fuse = M.retention
        fuse.fsType = "fuseblk"
        var disks = M.disks
        disks[1].partitions[0].fsType = "exfat"
        let r = try result("filesystem", M.facts(mounts: [M.root, fuse], disks: disks))
        #expect(r.status == .fail && r.message.contains("is exfat; exFAT volumes"))
    }

    @Test func aDeviceWithoutAFilesystemSaysToFormatIt() throws {
        let empty = try result("filesystem", M.device(ProbeResult()))
        #expect(empty.status == .fail && empty.message == "/dev/sdc has no filesystem")
        #expect(empty.fix?.contains("mkfs.ext4 /dev/sdc") == true)

        let table = try result("filesystem", M.device(ProbeResult(partitionTable: PartitionTable(type: "gpt", uuid: nil))))
        #expect(table.status == .fail && table.message.contains("gpt partition table"))

        let swap = try result("filesystem", M.device(ProbeResult(fsType: "swap", usage: "other")))
        #expect(swap.status == .fail && swap.message == "/dev/sdc holds swap (other), not a filesystem")

        let unreadable = try result("filesystem", M.device(nil, error: "cannot open /dev/sdc: permission denied"))
        #expect(unreadable.status == .fail && unreadable.message.contains("permission denied"))
        #expect(unreadable.fix?.contains("root") == true)
    }

    @Test func aMemoryFilesystemLosesTheJournalAtReboot() throws {
        let tmpfs = MountEntry(devno: "0:45", mountPoint: "/mnt/retention", fsType: "tmpfs", source: "tmpfs", readOnly: false)
        let f = M.facts(mounts: [M.root, tmpfs])
        let r = try result("filesystem", f)
        #expect(r.status == .fail && r.message.contains("lost at every reboot"))
        #expect(try result("holders", f).status == .skip)
    }

    @Test func ext4AndXfsPass() throws {
        var xfs = M.retention
        xfs.fsType = "xfs"
        #expect(try result("filesystem", M.facts(mounts: [M.root, xfs])).message == "/mnt/retention is xfs")
    }

    // MARK: system volume

    @Test func theRootFilesystemIsTheSystemVolume() throws {
        let f = M.facts(directory: "/")
        #expect(try result("mounted", f).status == .pass)
        let r = try result("system-volume", f)
        #expect(r.status == .fail && r.message.contains("system volume") && r.message.contains("/dev/sda1"))
        #expect(r.fix?.contains("mount a dedicated volume at /mnt/retention") == true)
        #expect(RetentionRules.probeSkipReason(f) == "nothing is written to the system volume")
    }

    @Test func aBindMountOfTheRootOrBootFilesystemIsTheSystemVolume() throws {
        var bind = M.root
        bind.mountPoint = "/mnt/retention"
        #expect(try result("system-volume", M.facts(mounts: [M.root, bind])).status == .fail)
        var bootBind = M.boot
        bootBind.mountPoint = "/mnt/retention"
        #expect(try result("system-volume", M.facts(mounts: [M.root, M.boot, bootBind])).message.contains("mounted at /boot"))
    }

    @Test func aBtrfsSubvolumeOfTheRootFilesystemIsTheSystemVolume() throws {
        let root = MountEntry(devno: "0:30", mountPoint: "/", fsType: "btrfs", source: "/dev/sda1", readOnly: false)
        let sub = MountEntry(devno: "0:31", mountPoint: "/mnt/retention", fsType: "btrfs", source: "/dev/sda1", readOnly: false)
        let f = M.facts(mounts: [root, sub])
        #expect(try result("system-volume", f).status == .fail)
        #expect(try result("mounted", f).subjects.map(\.name) == ["sda1"])
    }

    @Test func theWholeSystemDiskFailsAndSharingItWarns() throws {
        var f = M.device(ProbeResult(partitionTable: PartitionTable(type: "dos", uuid: nil)))
        f.named = "/dev/sda"
        f.deviceDevno = "8:0"
        #expect(try result("system-volume", f).status == .fail)

        var disks = M.disks
        disks[0].partitions.append(Partition(name: "sda3", devnode: "/dev/sda3", devno: "8:3"))
        var onSda3 = M.retention
        onSda3.devno = "8:3"
        onSda3.source = "/dev/sda3"
        let shared = try result("system-volume", M.facts(mounts: [M.root, onSda3], disks: disks))
        #expect(shared.status == .warn && shared.message.contains("shares disk sda"))
        #expect(CheckReport(checks: RetentionRules.evaluate(M.facts(mounts: [M.root, onSda3], disks: disks))).exitCode == 0)
    }

    // MARK: cache volume

    @Test func theVolumeOfMTAgentsOwnFilesIsTheCacheVolume() throws {
        var f = M.facts()
        f.cacheLocations = [CacheLocation(what: "state", path: "/mnt/retention/state")]
        let r = try result("cache-volume", f)
        #expect(r.status == .fail && r.message.contains("mt-agent's own state (/mnt/retention/state)"))
        #expect(RetentionRules.probeSkipReason(f) != nil)

        f.cacheLocations = [CacheLocation(what: "install", path: "/mnt/retention/bin/mt-agent")]
        #expect(try result("cache-volume", f).message.contains("install"))

        f.cacheLocations = [CacheLocation(what: "install", path: "/mnt/retention2/mt-agent")]
        #expect(try result("cache-volume", f).status == .pass)
    }

    // MARK: replication target

    @Test func aReplicationTargetCannotHoldRetention() throws {
        #expect(try result("replication-target", M.facts()).status == .pass)
        for name in ["sdb", "/dev/sdb", "36000c29sdb"] {
            var f = M.facts()
            f.targets = ["sdc", name]
            let r = try result("replication-target", f)
            #expect(r.status == .fail, "\(name)")
            #expect(r.subjects.map(\.name) == ["sdb"] && r.message.contains("replication target"))
        }
        var other = M.facts()
        other.targets = ["sdc", "sdd"]
        #expect(try result("replication-target", other).status == .pass)
    }

    @Test func aLogicalVolumeOverATargetIsOnTheTarget() throws {
        var (disks, lvMount) = lvm(uuid: "LVM-abcdef")
        disks[2].partitions = [Partition(name: "sdc1", devnode: "/dev/sdc1", devno: "8:33")]
        disks[4].slaves = ["sdb1", "sdc1"]
        var f = M.facts(mounts: [M.root, lvMount], disks: disks)
        f.targets = ["sdc"]
        let r = try result("replication-target", f)
        #expect(r.status == .fail && r.subjects.map(\.name) == ["sdc"])
    }

    // MARK: holders

    /// dm-0 over sdb1, mounted at /mnt/retention.
    func lvm(uuid: String?, name: String = "vg-retention") -> ([Disk], MountEntry) {
        var disks = M.disks
        disks[1].partitions[0].holders = ["dm-0"]
        var dm = Disk(name: "dm-0", devnode: "/dev/dm-0", devno: "253:0", transport: .dm)
        dm.dmName = name
        dm.dmUUID = uuid
        dm.slaves = ["sdb1"]
        disks.append(dm)
        return (disks, MountEntry(devno: "253:0", mountPoint: "/mnt/retention", fsType: "xfs", source: "/dev/mapper/\(name)", readOnly: false))
    }

    @Test func retentionOnLVMIsAWarning() throws {
        let (disks, mount) = lvm(uuid: "LVM-Xy12")
        let f = M.facts(mounts: [M.root, mount], disks: disks)
        let r = try result("holders", f)
        #expect(r.status == .warn && r.message.hasPrefix("retention on LVM"))
        #expect(r.message.contains("vg-retention (dm-0) on sdb"))
        #expect(CheckReport(checks: RetentionRules.evaluate(f)).exitCode == 0)
    }

    @Test(arguments: ["mpath-36000c29aaaa", "CRYPT-LUKS2-1234-retention", nil])
    func otherDeviceMapperVolumesFail(uuid: String?) throws {
        let (disks, mount) = lvm(uuid: uuid, name: "other")
        let r = try result("holders", M.facts(mounts: [M.root, mount], disks: disks))
        #expect(r.status == .fail && r.message.contains("device-mapper device other (dm-0)"))
    }

    @Test func mdRaidFails() throws {
        var disks = M.disks
        var md = Disk(name: "md0", devnode: "/dev/md0", devno: "9:0", transport: .md)
        md.slaves = ["sdc", "sdd"]
        disks.append(md)
        let mount = MountEntry(devno: "9:0", mountPoint: "/mnt/retention", fsType: "ext4", source: "/dev/md0", readOnly: false)
        let r = try result("holders", M.facts(mounts: [M.root, mount], disks: disks))
        #expect(r.status == .fail && r.message.contains("md RAID md0 over sdc, sdd"))
    }

    @Test func aPartitionOfADiskHeldByMultipathFails() throws {
        var disks = M.disks
        disks[1].holders = ["dm-1"]
        var map = Disk(name: "dm-1", devnode: "/dev/dm-1", devno: "253:1", transport: .dm)
        map.dmUUID = "mpath-36000c29sdb"
        disks.append(map)
        let r = try result("holders", M.facts(disks: disks))
        #expect(r.status == .fail && r.message.contains("its disk sdb is held by dm-1 (mpath-36000c29sdb)"))
        #expect(r.fix?.contains("multipath") == true)

        var direct = M.disks
        direct[1].partitions[0].holders = ["md127"]
        #expect(try result("holders", M.facts(disks: direct)).message.contains("sdb1 is held by md127"))
    }

    // MARK: capacity, free space

    @Test func noCapacityFails() throws {
        let r = try result("capacity", M.facts(space: VolumeSpace(totalBytes: 0, availableBytes: 0, readOnly: false)))
        #expect(r.status == .fail && r.message.contains("no capacity"))
        #expect(try result("capacity", M.facts()).message == "capacity 20.0 GiB")
    }

    @Test func freeSpaceIs256MiBPerPairPlusFour() throws {
        #expect(RetentionRules.requiredFreeBytes(pairs: 0) == 1 << 30)
        #expect(RetentionRules.requiredFreeBytes(pairs: 8) == 3 << 30)
        func facts(free: UInt64, pairs: Int) -> RetentionFacts {
            var f = M.facts(space: VolumeSpace(totalBytes: 4 << 30, availableBytes: free, readOnly: false))
            f.pairs = pairs
            return f
        }
        #expect(try result("free-space", facts(free: 3 << 30, pairs: 8)).status == .pass)
        let short = try result("free-space", facts(free: (3 << 30) - 1, pairs: 8))
        #expect(short.status == .fail)
        #expect(short.message == "/mnt/retention has 3.0 GiB free; it needs 3.0 GiB (256 MiB × (8 pairs + 4))")
        let tiny = try result("free-space", facts(free: 200 << 20, pairs: 1))
        #expect(tiny.message == "/mnt/retention has 200 MiB free; it needs 1.3 GiB (256 MiB × (1 pair + 4))")
        #expect(tiny.fix?.contains("free 1.1 GiB") == true)
    }

    // MARK: writable, write probe

    @Test func readOnlyFromTheMountTheFilesystemOrTheDeviceFails() throws {
        var ro = M.retention
        ro.readOnly = true
        let mountRO = M.facts(mounts: [M.root, ro])
        #expect(try result("writable", mountRO).message.contains("mounted read-only"))
        #expect(try result("writable", mountRO).fix?.contains("mount -o remount,rw /mnt/retention") == true)
        #expect(RetentionRules.probeSkipReason(mountRO) == "the volume is read-only")

        let fsRO = M.facts(space: VolumeSpace(totalBytes: 1 << 40, availableBytes: 1 << 40, readOnly: true))
        #expect(try result("writable", fsRO).status == .fail)
        #expect(RetentionRules.probeSkipReason(fsRO) == "the volume is read-only")

        var disks = M.disks
        disks[1].readOnly = true
        #expect(try result("writable", M.facts(disks: disks)).message.contains("its device sdb is read-only"))
    }

    @Test func aFrozenVolumeFailsTheWriteProbe() throws {
        let r = try result("write-probe", M.facts(probe: .timedOut(.seconds(5))))
        #expect(r.status == .fail)
        #expect(r.message.contains("did not finish within 5 s") && r.message.contains("frozen"))
        #expect(r.fix?.contains("fsfreeze -u /mnt/retention") == true)

        let failed = try result("write-probe", M.facts(probe: .failed("dd: error writing 'x': Input/output error")))
        #expect(failed.status == .fail && failed.message.hasSuffix("Input/output error"))

        #expect(try result("write-probe", M.facts(probe: .succeeded(.milliseconds(12)))).message.hasSuffix("took 12 ms"))
    }

    @Test func sizes() {
        #expect(RetentionRules.size(512) == "512 bytes")
        #expect(RetentionRules.size(200 << 20) == "200 MiB")
        #expect(RetentionRules.size((3 << 30) / 2) == "1.5 GiB")
        #expect(RetentionRules.milliseconds(.milliseconds(1500)) == "1500 ms")
    }
}
