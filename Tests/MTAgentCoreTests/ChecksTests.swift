import Testing

@testable import MTAgentCore

func scsiDisk(_ name: String, hctl: String, wwid: String?, type: Int = 0) -> Disk {
    var d = Disk(name: name, devnode: "/dev/\(name)", devno: "8:0", transport: .scsi)
    d.hctl = hctl
    d.scsiDeviceType = type
    d.wwid = wwid
    if let wwid, wwid.hasPrefix("3") {
        d.designators = [Designator(type: .naa, codeSet: .binary, association: .lun, value: String(wwid.dropFirst()), naaFormat: 6)]
    }
    return d
}

func inventory(_ disks: [Disk], hypervisor: String? = "vmware") -> Inventory {
    Inventory(host: Host(hypervisor: hypervisor), disks: disks)
}

@Suite("enable-uuid check", .tags(.small))
struct EnableUUIDCheckTests {
    func result(_ id: String, _ results: [CheckResult]) -> CheckResult? { results.first { $0.id == id } }

    @Test func passesWhenEverySCSIDiskHasNAA() {
        let r = EnableUUIDCheck.evaluate(inventory([
            scsiDisk("sda", hctl: "0:0:0:0", wwid: "36000c29aaaaaaaaaaaaaaaaaaaaaaaaa"),
            scsiDisk("sdb", hctl: "0:0:1:0", wwid: "36000c29bbbbbbbbbbbbbbbbbbbbbbbbb"),
        ]))
        #expect(result("enable-uuid", r)?.status == .pass)
        #expect(result("unique-identity", r)?.status == .pass)
        #expect(CheckReport(checks: r).exitCode == 0)
    }

    @Test func failsNamingExactlyTheDisksWithoutIdentity() throws {
        let r = EnableUUIDCheck.evaluate(inventory([
            scsiDisk("sda", hctl: "0:0:0:0", wwid: "36000c29aaaaaaaaaaaaaaaaaaaaaaaaa"),
            scsiDisk("sdb", hctl: "0:0:1:0", wwid: nil),
            scsiDisk("sdc", hctl: "0:0:2:0", wwid: "1VMware_Virtual_disk"),  // T10 only: not stable enough
        ]))
        let check = try #require(result("enable-uuid", r))
        #expect(check.status == .fail)
        #expect(check.subjects.map(\.name) == ["sdb", "sdc"])
        #expect(check.subjects.map(\.hctl) == ["0:0:1:0", "0:0:2:0"])
        #expect(check.message.contains("sdb (0:0:1:0)"))
        #expect(check.fix?.contains("disk.EnableUUID = TRUE") == true)
        #expect(check.fix?.contains("Power off the VM") == true)
        #expect(CheckReport(checks: r).exitCode == 1)
    }

    @Test func nonVMwareHostsGetTheGenericFix() {
        let r = EnableUUIDCheck.evaluate(inventory([scsiDisk("sda", hctl: "2:0:0:0", wwid: nil)], hypervisor: "kvm"))
        #expect(result("enable-uuid", r)?.fix == EnableUUIDCheck.genericFix)
    }

    @Test func clonedDisksSharingAnIdentityFail() throws {
        let same = "36000c29ccccccccccccccccccccccccc"
        let r = EnableUUIDCheck.evaluate(inventory([
            scsiDisk("sda", hctl: "0:0:0:0", wwid: "36000c29aaaaaaaaaaaaaaaaaaaaaaaaa"),
            scsiDisk("sdb", hctl: "0:0:1:0", wwid: same),
            scsiDisk("sdc", hctl: "1:0:0:0", wwid: same),
        ]))
        #expect(result("enable-uuid", r)?.status == .pass)
        let dup = try #require(result("unique-identity", r))
        #expect(dup.status == .fail)
        #expect(Set(dup.subjects.map(\.name)) == ["sdb", "sdc"])
        #expect(dup.message.contains(same))
        #expect(CheckReport(checks: r).exitCode == 1)
    }

    @Test func multipathPathsShareTheirLUNIdentityLegitimately() {
        let wwid = "36000c29ddddddddddddddddddddddddd"
        var a = scsiDisk("sdb", hctl: "0:0:1:0", wwid: wwid)
        var b = scsiDisk("sdc", hctl: "1:0:1:0", wwid: wwid)
        a.holders = ["dm-0"]
        b.holders = ["dm-0"]
        var map = Disk(name: "dm-0", devnode: "/dev/dm-0", devno: "253:0", transport: .dm)
        map.dmUUID = "mpath-" + wwid
        let r = EnableUUIDCheck.evaluate(inventory([a, b, map]))
        #expect(result("unique-identity", r)?.status == .pass)
        #expect(result("unique-identity", r)?.subjects.count == 2)

        // The same two paths held by a plain linear map are clones, not paths.
        map.dmUUID = "LVM-abc"
        #expect(result("unique-identity", EnableUUIDCheck.evaluate(inventory([a, b, map])))?.status == .fail)
    }

    @Test func nonSCSIDisksAndCDROMsAreSkippedNotFailed() throws {
        var vda = Disk(name: "vda", devnode: "/dev/vda", devno: "254:0", transport: .virtio)
        vda.wwid = nil
        let nvme = Disk(name: "nvme0n1", devnode: "/dev/nvme0n1", devno: "259:0", transport: .nvme)
        let loop = Disk(name: "loop0", devnode: "/dev/loop0", devno: "7:0", transport: .loop)
        let sr = scsiDisk("sr0", hctl: "1:0:0:0", wwid: nil, type: 5)
        let r = EnableUUIDCheck.evaluate(inventory([vda, nvme, loop, sr]))
        #expect(result("enable-uuid", r)?.status == .skip)
        let skipped = try #require(result("enable-uuid.non-scsi", r))
        #expect(skipped.status == .skip)
        #expect(skipped.subjects.map(\.name) == ["vda", "nvme0n1", "loop0", "sr0"])
        #expect(CheckReport(checks: r).exitCode == 0)
    }
}

@Suite("role rules", .tags(.small))
struct RoleRulesTests {
    @Test func systemThroughPartitionsHoldersAndSwap() {
        var sda = Disk(name: "sda", devnode: "/dev/sda", devno: "8:0", transport: .scsi)
        var sda1 = Partition(name: "sda1", devnode: "/dev/sda1", devno: "8:1")
        sda1.mountpoints = ["/boot"]
        sda.partitions = [sda1]

        var sdb = Disk(name: "sdb", devnode: "/dev/sdb", devno: "8:16", transport: .scsi)
        var sdb1 = Partition(name: "sdb1", devnode: "/dev/sdb1", devno: "8:17")
        sdb1.holders = ["dm-0"]
        sdb.partitions = [sdb1]
        var root = Disk(name: "dm-0", devnode: "/dev/dm-0", devno: "253:0", transport: .dm)
        root.slaves = ["sdb1"]
        root.mountpoints = ["/"]

        var sdc = Disk(name: "sdc", devnode: "/dev/sdc", devno: "8:32", transport: .scsi)
        sdc.swap = true

        var sdd = Disk(name: "sdd", devnode: "/dev/sdd", devno: "8:48", transport: .scsi)
        sdd.mountpoints = ["/mnt/retention"]
        sdd.holders = ["sdd"]  // a self-loop must not hang

        let sde = Disk(name: "sde", devnode: "/dev/sde", devno: "8:64", transport: .scsi)

        let roles = Dictionary(uniqueKeysWithValues: RoleRules.assignRoles([sda, sdb, root, sdc, sdd, sde]).map { ($0.name, $0.role) })
        #expect(roles == ["sda": .system, "sdb": .system, "dm-0": .system, "sdc": .system, "sdd": .free, "sde": .free])
    }
}
