import Logging
import MTAgentCore
import Testing

@testable import MTAgentLinux

/// A VMware 16-byte NAA-6 designator page plus a T10 vendor designator.
func vmwarePage83(_ naaHex: String) -> [UInt8] {
    var naa: [UInt8] = []
    var chars = Array(naaHex)
    while chars.count >= 2 {
        naa.append(UInt8(String(chars[0...1]), radix: 16)!)
        chars.removeFirst(2)
    }
    let t10 = Array("VMware  Virtual disk    ".utf8)
    let body: [UInt8] = [0x01, 0x03, 0x00, UInt8(naa.count)] + naa + [0x02, 0x01, 0x00, UInt8(t10.count)] + t10
    return [0x00, 0x83, 0x00, UInt8(body.count)] + body
}

func discover(_ root: String) throws -> Inventory {
    let files = RootedFiles(root: root)
    return try Discovery(
        files: files, enumerator: SysfsEnumerator(files: files), prober: NoProbing(),
        logger: Logger(label: "test")
    ).inventory()
}

@Suite("discovery on sysfs trees", .tags(.medium))
struct SysfsDiscoveryTests {
    @Test func vmwareDisksWithAndWithoutIdentity() throws {
        let scratch = try Scratch()
        defer { scratch.cleanup() }
        let tree = try SysfsTree(root: scratch.directory)
        let naa = "6000c2929b5d4f1a8e7c3b2a19081726"
        try tree.scsiDisk(
            "sda", host: 0, target: 0, minor: 0, vpd83: vmwarePage83(naa),
            vpd80: [0, 0x80, 0, 8] + Array("6000c292".utf8), partitions: 2)
        try tree.scsiDisk("sdb", host: 0, target: 1, minor: 16, vpd83: [0, 0x83, 0, 0])
        try tree.scsiDisk("sdc", host: 2, target: 0, minor: 32, driver: "mptsas")

        let inv = try discover(scratch.directory)
        #expect(inv.host.hypervisor == "vmware")
        #expect(inv.host.source == "sysfs")
        #expect(inv.disks.map(\.name) == ["sda", "sdb", "sdc"])
        let sda = inv.disks[0]
        #expect(sda.hctl == "0:0:0:0")
        #expect(sda.driver == "vmw_pvscsi")
        #expect(sda.vendor == "VMware" && sda.model == "Virtual disk" && sda.revision == "2.0")
        #expect(sda.wwid == "3" + naa)
        #expect(sda.serial == "6000c292")
        #expect(sda.designators.map(\.type) == [.naa, .t10])
        #expect(sda.sizeBytes == 1 << 30)
        #expect(sda.partitions.map(\.name) == ["sda1", "sda2"])
        #expect(sda.partitions[1].startBytes == 6144 * 512)
        #expect(sda.partitions[0].mountpoints == ["/"])
        #expect(sda.role == .system)
        #expect(inv.disks[1].wwid == nil && inv.disks[1].role == .free)
        #expect(inv.disks[2].driver == "mptsas")

        let check = EnableUUIDCheck.evaluate(inv).first { $0.id == "enable-uuid" }
        #expect(check?.status == .fail)
        #expect(check?.subjects.map(\.name) == ["sdb", "sdc"])
    }

    @Test func malformedPagesAndMissingAttributesWarnPerDisk() throws {
        let scratch = try Scratch()
        defer { scratch.cleanup() }
        let tree = try SysfsTree(root: scratch.directory)
        try tree.scsiDisk("sda", host: 0, target: 0, minor: 0, vpd83: [0x00, 0x83, 0x00, 0x40, 0x01, 0x03, 0x00, 0x10, 0x60])
        let sdb = try tree.scsiDisk("sdb", host: 0, target: 1, minor: 16, vpd83: vmwarePage83("6000c29000000000000000000000000b"))
        tree.remove("\(sdb)/size")
        tree.remove("\(sdb)/queue/logical_block_size")
        tree.remove("\(sdb)/../../vendor")

        let inv = try discover(scratch.directory)
        let sda = try #require(inv.disks.first { $0.name == "sda" })
        #expect(sda.wwid == nil)
        #expect(sda.warnings.count == 2)
        #expect(sda.warnings.allSatisfy { $0.hasPrefix("sda: VPD page 0x83") })
        let b = try #require(inv.disks.first { $0.name == "sdb" })
        #expect(b.sizeBytes == 0 && b.logicalBlockSize == 512 && b.vendor == nil)
        #expect(b.wwid == "36000c29000000000000000000000000b")
    }

    @Test func aDiskThatVanishesDuringEnumerationIsSkipped() throws {
        let scratch = try Scratch()
        defer { scratch.cleanup() }
        let tree = try SysfsTree(root: scratch.directory)
        try tree.scsiDisk("sda", host: 0, target: 0, minor: 0, vpd83: vmwarePage83("6000c29000000000000000000000000a"))
        let gone = try tree.scsiDisk("sdb", host: 0, target: 1, minor: 16)
        // Removed after the class link was listed: the link dangles, or the directory lost `dev`.
        tree.remove("\(gone)/dev")
        try tree.link("/sys/class/block/sdz", to: "../../devices/gone/block/sdz")
        let inv = try discover(scratch.directory)
        #expect(inv.disks.map(\.name) == ["sda"])
    }

    @Test func aRootThatIsNotASystemTreeIsOneClearError() throws {
        let scratch = try Scratch()
        defer { scratch.cleanup() }
        #expect {
            try discover(scratch.directory)
        } throws: { error in
            "\(error)".contains("is not a system tree") && "\(error)".contains("sys/class/block is missing")
        }
    }

    @Test func cdromsAreListedButNotCheckedForIdentity() throws {
        let scratch = try Scratch()
        defer { scratch.cleanup() }
        let tree = try SysfsTree(root: scratch.directory)
        try tree.scsiDisk("sda", host: 0, target: 0, minor: 0, vpd83: vmwarePage83("6000c29000000000000000000000000a"))
        try tree.scsiDisk("sr0", host: 1, target: 0, minor: 0, type: 5)
        let inv = try discover(scratch.directory)
        let results = EnableUUIDCheck.evaluate(inv)
        #expect(results.first { $0.id == "enable-uuid" }?.status == .pass)
        #expect(results.first { $0.id == "enable-uuid.non-scsi" }?.subjects.map(\.name) == ["sr0"])
    }

    @Test func holdersAndDeviceMapperMapsAreFollowed() throws {
        let scratch = try Scratch()
        defer { scratch.cleanup() }
        let tree = try SysfsTree(root: scratch.directory)
        let sdb = try tree.scsiDisk("sdb", host: 0, target: 1, minor: 16, vpd83: vmwarePage83("6000c29000000000000000000000000b"))
        try tree.write("/proc/self/mountinfo", "22 1 253:0 / / rw - xfs /dev/mapper/vg-root rw\n")
        try tree.write("/proc/swaps", "Filename Type Size Used Priority\n/dev/mapper/vg-swap partition 1024 0 -2\n")
        for (minor, name) in [(0, "vg-root"), (1, "vg-swap")] {
            let dm = "/sys/devices/virtual/block/dm-\(minor)"
            try tree.write("\(dm)/dev", "253:\(minor)\n")
            try tree.write("\(dm)/size", "2048\n")
            try tree.write("\(dm)/dm/name", name + "\n")
            try tree.write("\(dm)/dm/uuid", "LVM-abc\(minor)\n")
            try tree.mkdirs("\(dm)/holders")
            try tree.link("\(dm)/slaves/sdb", to: "../../../../pci0000:00/0000:00:10.0/host0/target0:0:1/0:0:1:0/block/sdb")
            try tree.link("\(sdb)/holders/dm-\(minor)", to: "../../../../../../../../virtual/block/dm-\(minor)")
            try tree.link("/sys/class/block/dm-\(minor)", to: "../../devices/virtual/block/dm-\(minor)")
        }
        let inv = try discover(scratch.directory)
        let disk = try #require(inv.disks.first { $0.name == "sdb" })
        #expect(disk.holders == ["dm-0", "dm-1"])
        #expect(disk.role == .system)
        let root = try #require(inv.disks.first { $0.name == "dm-0" })
        #expect(root.transport == .dm && root.dmName == "vg-root" && root.slaves == ["sdb"] && root.mountpoints == ["/"])
        #expect(inv.disks.first { $0.name == "dm-1" }?.swap == true)
        // Stacked devices carry no VPD identity and are not judged by enable-uuid.
        #expect(EnableUUIDCheck.evaluate(inv).first { $0.id == "enable-uuid.non-scsi" } == nil)
    }
}
