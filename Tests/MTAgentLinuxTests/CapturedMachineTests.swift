import Foundation
import MTAgentCore
import Testing

@testable import MTAgentLinux

/// Fixture machines captured with `mt-agent collect` inside VMs with real kernels and real SCSI,
/// NVMe and virtio disks (Scripts/vm-fixtures). Each `<name>.expected.json` records what the VM
/// was given and what mt-agent printed live in it; reading the capture must agree with both.
@Suite("captured machines", .tags(.medium))
struct CapturedMachineTests {
    static let fixtures = URL(fileURLWithPath: #filePath)
        .deletingLastPathComponent().deletingLastPathComponent().appendingPathComponent("Fixtures")
    static let machines = ["vmware-pvscsi", "vmware-lsi-sas", "vmware-cloned", "kvm-virtio-nvme", "multipath"]

    /// Fields that come from libblkid or udevd, which a capture of /sys and /proc cannot carry.
    static let liveOnly: Set<String> = ["fsType", "uuid", "label", "usage", "partitionTable", "partUUID", "partLabel", "udev"]

    func expected(_ machine: String) throws -> [String: Any] {
        let data = try Data(contentsOf: Self.fixtures.appendingPathComponent("\(machine).expected.json"))
        return try #require(try JSONSerialization.jsonObject(with: data) as? [String: Any])
    }

    /// Discovery on a private copy of the capture, as the JSON the CLI prints. The copy loses its
    /// empty directories, as a git clone of the fixture does: discovery must not need them.
    func captured(_ machine: String) throws -> (Inventory, [[String: Any]]) {
        let scratch = try Scratch()
        defer { scratch.cleanup() }
        try scratch.run("cp", "-a", Self.fixtures.appendingPathComponent(machine).path, scratch.path("root"))
        try scratch.run("find", scratch.path("root"), "-depth", "-type", "d", "-empty", "-delete")
        let inventory = try discover(scratch.path("root"))
        let json = try JSONSerialization.jsonObject(with: try JSONEncoder().encode(inventory)) as? [String: Any]
        return (inventory, try #require(json?["disks"] as? [[String: Any]]))
    }

    /// One JSON spelling for a value, whatever Foundation type the parser gave it.
    func canonical(_ value: Any?) throws -> String {
        let data = try JSONSerialization.data(withJSONObject: [value ?? NSNull()], options: [.sortedKeys])
        return String(decoding: data, as: UTF8.self)
    }

    @Test(arguments: machines)
    func captureReadsBackAsTheLiveInventory(_ machine: String) throws {
        let live = try #require((try expected(machine)["liveDisks"] as? [String: Any])?["disks"] as? [[String: Any]])
        let (_, disks) = try captured(machine)
        #expect(disks.map { $0["name"] as? String } == live.map { $0["name"] as? String })
        for (got, want) in zip(disks, live) {
            let name = want["name"] as? String ?? "?"
            for key in Set(want.keys).subtracting(Self.liveOnly).sorted() where key != "partitions" && key != "warnings" {
                let (g, w) = (try canonical(got[key]), try canonical(want[key]))
                #expect(g == w, "\(machine) \(name).\(key): captured \(g), live \(w)")
            }
            let parts = { (d: [String: Any]) in
                (d["partitions"] as? [[String: Any]] ?? []).map { p in
                    "\(p["name"]!) \(p["startBytes"]!) \(p["sizeBytes"]!) \(p["mountpoints"]!) \(p["holders"]!)"
                }
            }
            #expect(parts(got) == parts(want), "\(machine) \(name) partitions")
        }
    }

    /// Independent of mt-agent's own earlier output: what the hypervisor was told to present.
    @Test(arguments: machines)
    func identitiesAreWhatTheVMWasGiven(_ machine: String) throws {
        let spec = try expected(machine)
        let (inventory, _) = try captured(machine)
        let given = try #require(spec["given"] as? [[String: Any]])
        for disk in given {
            for name in disk["names"] as? [String] ?? [] {
                let d = try #require(inventory.disks.first { $0.name == name }, "\(machine): \(name) missing")
                #expect(d.sizeBytes == (disk["sizeBytes"] as? NSNumber)?.uint64Value, "\(machine) \(name) size")
                if let serial = disk["serial"] as? String { #expect(d.serial == serial, "\(machine) \(name) serial") }
                if let vendor = disk["vendor"] as? String { #expect(d.vendor == vendor, "\(machine) \(name) vendor") }
                if let product = disk["product"] as? String { #expect(d.model == product, "\(machine) \(name) model") }
                // In-guest LIO LUNs get their address from tcm_loop, not from the hypervisor.
                if disk["madeInGuest"] as? Bool == false, let target = disk["scsi_id"] as? Int, let lun = disk["lun"] as? Int {
                    #expect(d.hctl?.hasSuffix(":0:\(target):\(lun)") == true, "\(machine) \(name) hctl \(d.hctl ?? "nil")")
                }
                if disk["key"] as? String == "uuid-off" { #expect(d.wwid == nil && d.designators.isEmpty) }
                if let wwid = disk["expectWWID"] as? String { #expect(d.wwid == wwid, "\(machine) \(name) wwid") }
                for want in disk["expectDesignators"] as? [[String: String]] ?? [] {
                    #expect(
                        d.designators.contains {
                            $0.type.rawValue == want["type"] && $0.value == want["value"] && $0.association.rawValue == want["association"]
                        }, "\(machine) \(name) lacks designator \(want)")
                }
                if let nvme = disk["nvme"] as? [String: String], let nguid = nvme["nguid"], let uuid = nvme["uuid"] {
                    #expect(d.designators.contains { $0.type == .eui64 && $0.value == nguid.filter(\.isHexDigit) })
                    #expect(d.designators.contains { $0.type == .uuid && $0.value == uuid })
                    // The kernel prefers the UUID; /dev/disk/by-id and multipath use its form.
                    #expect(d.wwid == "uuid." + uuid)
                }
            }
        }
        let check = try #require(spec["expectEnableUUID"] as? [String: Any])
        let results = EnableUUIDCheck.evaluate(inventory)
        let worst = results.map(\.status).filter { $0 != .skip }.max() ?? .skip
        #expect(worst.rawValue == check["status"] as? String, "\(machine) enable-uuid")
        let failing = Set(results.filter { $0.status == .fail }.flatMap { $0.subjects.map(\.name) })
        #expect(failing == Set(check["subjects"] as? [String] ?? []), "\(machine) failing subjects")
    }

    @Test func driversAndHypervisorsOfTheRealKernels() throws {
        let drivers = try Dictionary(uniqueKeysWithValues: Self.machines.map { m in
            (m, Set(try captured(m).0.disks.compactMap(\.driver)))
        })
        #expect(drivers["vmware-pvscsi"] == ["vmw_pvscsi", "tcm_loopback"])
        #expect(drivers["vmware-lsi-sas"] == ["mptsas"])
        #expect(drivers["kvm-virtio-nvme"]?.isSuperset(of: ["virtio_scsi", "virtio_blk", "nvme"]) == true)
        #expect(try captured("vmware-pvscsi").0.disks.first?.driver == "vmw_pvscsi")
        let mp = try captured("multipath").0
        #expect(mp.disks.first { $0.transport == .dm }?.dmUUID?.hasPrefix("mpath-") == true)
    }
}
