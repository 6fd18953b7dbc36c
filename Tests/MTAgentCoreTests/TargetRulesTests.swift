import Testing

@testable import MTAgentCore

/// DESIGN §4 target rules, each on a disk that breaks exactly that rule.
struct TargetRulesTests {
    static func free(_ name: String = "sdc", size: UInt64 = 10 << 30) -> Disk {
        var d = RetentionMachine.disk(name, devno: "8:32")
        d.sizeBytes = size
        return d
    }

    static func facts(_ device: TargetFacts.Device, assigned: String? = "g1", requested: String? = "g1",
                      otherPair: String? = nil, source: UInt64? = 8 << 30) -> TargetFacts {
        TargetFacts(identity: "36000c29sdc", device: device, assignedGroup: assigned, requestedGroup: requested,
                    retentionDisks: ["sdb", "sdb1"], retentionPath: "/mnt/retention", otherPair: otherPair, sourceSize: source)
    }

    func failing(_ f: TargetFacts) -> [String] {
        TargetRules.refusals(f).map(\.id)
    }

    @Test func anAssignedUnusedLargeEnoughDiskPassesEveryRule() {
        let results = TargetRules.evaluate(Self.facts(.disk(Self.free())))
        #expect(results.allSatisfy { $0.status == .pass }, "\(results)")
        #expect(Set(results.map(\.id)) == ["target.assigned", "target.identity", "target.system", "target.mounted", "target.holders",
                                           "target.swap", "target.retention", "target.size", "target.other-pair"])
    }

    @Test func eachRuleRefusesWithItsFix() throws {
        #expect(failing(Self.facts(.disk(Self.free()), assigned: nil)) == ["target.assigned"])
        let unassigned = try #require(TargetRules.refusals(Self.facts(.disk(Self.free()), assigned: nil)).first)
        #expect(unassigned.fix == "mt-agent targets assign 36000c29sdc --group GROUP")
        #expect(failing(Self.facts(.disk(Self.free()), requested: "g2")) == ["target.assigned"])

        var system = Self.free("sda")
        system.role = .system
        #expect(failing(Self.facts(.disk(system))) == ["target.system"])

        var mounted = Self.free()
        mounted.partitions = [Partition(name: "sdc1", devnode: "/dev/sdc1", devno: "8:33")]
        mounted.partitions[0].mountpoints = ["/data"]
        #expect(failing(Self.facts(.disk(mounted))) == ["target.mounted"])

        var held = Self.free()
        held.holders = ["dm-3"]
        #expect(failing(Self.facts(.disk(held))) == ["target.holders"])

        var swap = Self.free()
        swap.swap = true
        #expect(failing(Self.facts(.disk(swap))) == ["target.swap"])

        let retention = Self.free("sdb")
        #expect(failing(Self.facts(.disk(retention))) == ["target.retention"])

        #expect(failing(Self.facts(.disk(Self.free(size: 4 << 30)))) == ["target.size"])
        #expect(failing(Self.facts(.disk(Self.free()), otherPair: "db-disk1")) == ["target.other-pair"])
        #expect(failing(Self.facts(.missing)) == ["target.identity"])
        #expect(failing(Self.facts(.ambiguous([Self.free("sdc"), Self.free("sdd")]))) == ["target.identity"])
    }

    static func lab(_ device: TargetFacts.Device, onRetentionFilesystem: Bool = false) -> TargetFacts {
        var f = facts(device)
        f.allowFileTargets = true
        f.fileOnRetentionFilesystem = onRetentionFilesystem
        return f
    }

    @Test func labFilesMustBeLargeEnoughAndOffTheRetentionVolume() {
        #expect(failing(Self.lab(.file(path: "/var/tmp/t.img", size: 8 << 30))).isEmpty)
        #expect(failing(Self.lab(.file(path: "/var/tmp/t.img", size: 1 << 30))) == ["target.size"])
        #expect(failing(Self.lab(.file(path: "/mnt/retention/t.img", size: 8 << 30))) == ["target.retention"])
        #expect(failing(Self.lab(.file(path: "/mnt/retention2/t.img", size: 8 << 30))).isEmpty)
        // Same filesystem as the retention directory, wherever the path is (a bind mount, say).
        #expect(failing(Self.lab(.file(path: "/srv/t.img", size: 8 << 30), onRetentionFilesystem: true)) == ["target.retention"])
    }

    @Test func aRegularFileIsNoTargetWithoutTheLabSetting() {
        let f = Self.facts(.file(path: "/etc/shadow", size: 1024), source: nil)
        #expect(failing(f) == ["target.kind"])
        let kind = TargetRules.refusals(f).first
        #expect(kind?.message == "/etc/shadow is a regular file, not a block device")
        #expect(kind?.fix?.contains("allow_file_targets") == true)
    }
}
