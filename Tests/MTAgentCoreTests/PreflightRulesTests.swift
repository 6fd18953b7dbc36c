import Testing

@testable import MTAgentCore

@Suite("preflight rules", .tags(.small))
struct PreflightRulesTests {
    func vmware(_ disks: [Disk]) -> Inventory { inventory(disks, hypervisor: "vmware") }

    func disk(_ name: String, driver: String) -> Disk {
        var d = scsiDisk(name, hctl: "0:0:0:0", wwid: "36000c29aaaaaaaaaaaaaaaaaaaaaaaaa")
        d.driver = driver
        return d
    }

    @Test func pvscsiIsAWarningWithGuidance() {
        let r = PreflightRules.scsiController(vmware([disk("sda", driver: "mptsas"), disk("sdb", driver: "vmw_pvscsi")]))
        #expect(r.status == .warn)
        #expect(r.subjects.map(\.name) == ["sdb"])
        #expect(r.fix?.contains("LSI Logic SAS") == true)
        #expect(PreflightRules.scsiController(vmware([disk("sda", driver: "mptsas")])).status == .pass)
        #expect(PreflightRules.scsiController(inventory([disk("sda", driver: "virtio_scsi")], hypervisor: "kvm")).status == .skip)
    }

    @Test func atMostSixtyDisks() {
        let sixty = (0..<60).map { disk("sd\($0)", driver: "mptsas") }
        #expect(PreflightRules.diskCount(vmware(sixty)).status == .pass)
        let r = PreflightRules.diskCount(vmware(sixty + [disk("sdx", driver: "mptsas")]))
        #expect(r.status == .fail)
        #expect(r.message.contains("61"))
    }

    @Test func rootOnLVMFails() {
        var lv = Disk(name: "dm-0", devnode: "/dev/dm-0", devno: "253:0", transport: .dm)
        lv.dmUUID = "LVM-abcdef"
        lv.dmName = "centos-root"
        lv.mountpoints = ["/"]
        let r = PreflightRules.rootNotOnLVM(vmware([lv]))
        #expect(r.status == .fail && r.message.contains("centos-root"))
        var plain = disk("sda", driver: "mptsas")
        var p = Partition(name: "sda2", devnode: "/dev/sda2", devno: "8:2")
        p.mountpoints = ["/"]
        plain.partitions = [p]
        #expect(PreflightRules.rootNotOnLVM(vmware([plain])).status == .pass)
        #expect(PreflightRules.rootNotOnLVM(vmware([])).status == .warn)
    }

    @Test func hostsMustMapEveryAddress() {
        let hosts = """
            127.0.0.1   localhost
            10.0.0.5    mt01.example.com mt01   # primary
            # 10.0.1.5 mt01
            """
        let ok = PreflightRules.hostsFile(hostname: "mt01.example.com", addresses: ["10.0.0.5"], hosts: hosts)
        #expect(ok.status == .pass)
        let missing = PreflightRules.hostsFile(hostname: "mt01", addresses: ["10.0.0.5", "10.0.1.5"], hosts: hosts)
        #expect(missing.status == .fail)
        #expect(missing.message.contains("10.0.1.5") && !missing.message.contains("10.0.0.5,"))
        #expect(missing.fix == "add to /etc/hosts: 10.0.1.5 mt01")
        #expect(PreflightRules.hostsFile(hostname: nil, addresses: [], hosts: hosts).status == .fail)
        #expect(PreflightRules.hostsFile(hostname: "mt01", addresses: ["10.0.0.5"], hosts: nil).status == .fail)
    }

    @Test func vmwareToolsAndTime() {
        #expect(PreflightRules.vmwareTools(hypervisor: "vmware", running: false).status == .fail)
        #expect(PreflightRules.vmwareTools(hypervisor: "vmware", running: true).status == .pass)
        #expect(PreflightRules.vmwareTools(hypervisor: "kvm", running: false).status == .skip)
        #expect(PreflightRules.timeSync(synchronized: false).status == .fail)
        #expect(PreflightRules.timeSync(synchronized: true).status == .pass)
        #expect(PreflightRules.timeSync(synchronized: nil).status == .skip)
    }
}
