import Testing

@testable import MTAgentCore

@Suite("mountinfo, swaps and host", .tags(.small))
struct ParsingTests {
    @Test func mountinfoWithOptionalFieldsAndEscapes() {
        let text = """
            22 1 254:0 / / rw,relatime shared:1 - ext4 /dev/vda rw
            36 22 8:1 / /mnt/my\\040retention rw,noatime shared:2 master:1 - xfs /dev/sdb1 rw,attr2
            37 22 8:17 / /boot ro,relatime - ext4 /dev/sdc1 ro
            40 22 0:45 /@ /data rw - btrfs /dev/sdd rw
            garbage line
            """
        let m = MountInfo.parse(text)
        #expect(m.count == 4)
        #expect(m[1] == MountEntry(devno: "8:1", mountPoint: "/mnt/my retention", fsType: "xfs", source: "/dev/sdb1", readOnly: false))
        #expect(m[2].readOnly)
        #expect(m[3].devno == "0:45" && m[3].source == "/dev/sdd")
    }

    @Test func swaps() {
        let text = """
            Filename\t\t\t\tType\t\tSize\t\tUsed\t\tPriority
            /dev/sda2                               partition\t2097148\t\t0\t\t-2
            /swapfile                               file\t\t1048572\t\t0\t\t-3
            """
        #expect(Swaps.parse(text) == [SwapEntry(filename: "/dev/sda2", type: "partition"), SwapEntry(filename: "/swapfile", type: "file")])
        #expect(Swaps.parse("Filename Type Size Used Priority\n").isEmpty)
    }

    @Test func hypervisorFromDMI() {
        #expect(Host.hypervisor(systemVendor: "VMware, Inc.", productName: "VMware Virtual Platform", xenType: nil, cpuHypervisorFlag: true) == "vmware")
        #expect(Host.hypervisor(systemVendor: "QEMU", productName: "Standard PC (i440FX + PIIX, 1996)", xenType: nil, cpuHypervisorFlag: true) == "kvm")
        #expect(Host.hypervisor(systemVendor: "Microsoft Corporation", productName: "Virtual Machine", xenType: nil, cpuHypervisorFlag: true) == "hyperv")
        #expect(Host.hypervisor(systemVendor: nil, productName: nil, xenType: "xen\n", cpuHypervisorFlag: true) == "xen")
        #expect(Host.hypervisor(systemVendor: nil, productName: nil, xenType: nil, cpuHypervisorFlag: true) == "unknown")
        #expect(Host.hypervisor(systemVendor: "Dell Inc.", productName: "PowerEdge R740", xenType: nil, cpuHypervisorFlag: false) == nil)
    }
}
