import MTAgentCore

/// Which disks the running system lives on, from the inventory: what multipath must leave
/// alone and the only disks LVM may activate.
struct SystemDisks {
    /// The physical disks under `/` (through partitions, LVM, md, dm-crypt).
    var root: [Disk]
    /// Every disk with role `system` (`/`, `/boot`, swap…), physical or stacked.
    var all: [Disk]
    /// The physical disks among `all`.
    var physical: [Disk]

    init(_ inventory: Inventory) {
        let byName = Dictionary(inventory.disks.map { ($0.name, $0) }, uniquingKeysWith: { a, _ in a })
        var parentOfPartition: [String: String] = [:]
        for disk in inventory.disks {
            for part in disk.partitions { parentOfPartition[part.name] = disk.name }
        }

        func physicalUnder(_ name: String, _ seen: Set<String>) -> [Disk] {
            let diskName = parentOfPartition[name] ?? name
            guard let disk = byName[diskName], !seen.contains(diskName) else { return [] }
            if Self.isPhysical(disk) { return [disk] }
            return disk.slaves.flatMap { physicalUnder($0, seen.union([diskName])) }
        }

        let holdingRoot = inventory.disks.filter { disk in
            disk.mountpoints.contains("/") || disk.partitions.contains { $0.mountpoints.contains("/") }
        }
        var root: [Disk] = []
        for disk in holdingRoot {
            for p in physicalUnder(disk.name, []) where !root.contains(where: { $0.name == p.name }) { root.append(p) }
        }
        self.root = root
        all = inventory.disks.filter { $0.role == .system }
        physical = all.filter(Self.isPhysical)
    }

    static func isPhysical(_ disk: Disk) -> Bool {
        ![.dm, .md, .loop, .zram, .ram].contains(disk.transport)
    }

    /// The names `/dev/disk/by-id/` gives the disk from its identity (scsi_id and the kernel's
    /// NVMe `wwid`), which are what stays true across reboots; empty when it has no identity.
    static func byIDNames(_ disk: Disk) -> [String] {
        guard let wwid = disk.wwid else { return [] }
        switch disk.transport {
        case .scsi:
            var names = ["scsi-" + wwid]
            if wwid.hasPrefix("3") { names.append("wwn-0x" + wwid.dropFirst()) }
            return names
        case .nvme:
            return ["nvme-" + wwid]
        default:
            return []
        }
    }

    /// The line admins see when a system disk cannot be named by identity.
    static func noIdentity(_ disk: Disk) -> String {
        "system disk \(disk.name)\(disk.hctl.map { " (\($0))" } ?? "") has no WWID, so setup cannot name it by identity; "
            + "run 'mt-agent check enable-uuid' (on VMware: power off, set disk.EnableUUID=TRUE, power on), then run setup again"
    }
}

/// Why a step cannot be applied until the admin acts (its `check` returns it as `.blocked`).
struct StepBlocked: Error, CustomStringConvertible {
    var message: String
    var description: String { message }
}
