import MTAgentCore

/// LVM may use only the system disks. Replicated disks carry the source machine's physical
/// volumes; LVM must never activate (or even write metadata to) them on the master target.
///
/// Mechanism: `devices/global_filter` in lvm.conf, accepting the system disks by their
/// `/dev/disk/by-id` names (which follow the disk's WWID, not its kernel name) and rejecting
/// everything else. `global_filter` rather than `filter` because it also binds lvmetad (RHEL 7)
/// and the udev-triggered `pvscan --cache` that auto-activates volume groups, which `filter`
/// does not. On LVM with a devices file in use (RHEL 9: `/etc/lvm/devices/system.devices`),
/// LVM ignores every filter and uses only the listed devices; the step then checks that the
/// file lists only system disks and writes nothing.
public struct LVMFilterStep: SetupStep {
    public let id = "lvm"
    public let title = "Restrict LVM to the system disks (devices/global_filter in /etc/lvm/lvm.conf)"
    public static let path = "/etc/lvm/lvm.conf"
    public static let devicesFile = "/etc/lvm/devices/system.devices"

    public init() {}

    public var rebootReason: String? {
        "volume groups already active on replicated disks stay active until a reboot"
    }

    public func check(_ context: SetupContext) throws -> StepState {
        let accepted: [String]
        switch Self.acceptedDevices(context.inventory) {
        case .failure(let blocked): return .blocked(blocked.message)
        case .success(let patterns): accepted = patterns
        }
        let existing = try ConfigText.read(Self.path, context.files)
        if try usesDevicesFile(context, lvmConf: existing) {
            if let foreign = try Self.foreignDevices(context) {
                return .blocked(foreign)
            }
            return .done
        }
        let merged = try LVMConf.merge(existing, path: Self.path, filter: LVMConf.filter(accepting: accepted))
        if merged.changes.isEmpty { return .done }
        return .needed((existing == nil ? "create \(Self.path): " : "merge into \(Self.path): ") + merged.changes.joined(separator: "; "))
    }

    public func apply(_ context: SetupContext) throws -> StepOutcome {
        let accepted = try Self.acceptedDevices(context.inventory).get()
        let existing = try ConfigText.read(Self.path, context.files)
        let filter = LVMConf.filter(accepting: accepted)
        let merged = try LVMConf.merge(existing, path: Self.path, filter: filter)
        try context.files.write(Self.path, Array(merged.text.utf8), mode: context.files.mode(of: Self.path) ?? 0o644)
        return StepOutcome(
            summary: "\(existing == nil ? "created" : "merged into") \(Self.path): \(LVMConf.render(filter))",
            rebootReason: rebootReason)
    }

    private func usesDevicesFile(_ context: SetupContext, lvmConf: String?) throws -> Bool {
        guard context.files.exists(Self.devicesFile) else { return false }
        return try lvmConf.flatMap { try LVMConf.useDevicesFile($0, path: Self.path) } ?? true
    }

    /// The regular expressions (for `a|…|`) of every device a system PV may be on.
    static func acceptedDevices(_ inventory: Inventory) -> Result<[String], StepBlocked> {
        let system = SystemDisks(inventory)
        guard !system.physical.isEmpty else {
            return .failure(.init(message: "no system disk found in the inventory; setup cannot tell which disks LVM may use"))
        }
        var patterns: [String] = []
        for disk in system.physical {
            let names = SystemDisks.byIDNames(disk)
            guard !names.isEmpty else { return .failure(.init(message: SystemDisks.noIdentity(disk))) }
            patterns += names.map { "^/dev/disk/by-id/\(escape($0))(-part[0-9]+)?$" }
        }
        // Stacked system devices that can hold a PV: md arrays and dm-crypt or multipath maps
        // (logical volumes themselves are not PVs).
        for disk in system.all where !SystemDisks.isPhysical(disk) {
            if disk.transport == .md {
                patterns.append("^/dev/\(escape(disk.name))$")
            } else if disk.transport == .dm, let name = disk.dmName, !(disk.dmUUID ?? "").hasPrefix("LVM-") {
                patterns.append("^/dev/mapper/\(escape(name))$")
            }
        }
        return .success(patterns)
    }

    /// A line naming what the devices file lists beyond the system disks; nil when nothing.
    static func foreignDevices(_ context: SetupContext) throws -> String? {
        guard let text = try ConfigText.read(devicesFile, context.files) else { return nil }
        let disks = context.inventory.disks
        var parentOfPartition: [String: Disk] = [:]
        for disk in disks { for part in disk.partitions { parentOfPartition[part.name] = disk } }
        for line in text.split(separator: "\n") where !line.hasPrefix("#") {
            var fields: [String: String] = [:]
            for pair in line.split(separator: " ") {
                let kv = pair.split(separator: "=", maxSplits: 1)
                if kv.count == 2 { fields[String(kv[0])] = String(kv[1]) }
            }
            guard fields["IDTYPE"] != nil else { continue }
            let devname = fields["DEVNAME"].map { String($0.split(separator: "/").last ?? "") }
            let byName = devname.flatMap { name in disks.first { $0.name == name } ?? parentOfPartition[name] }
            let byID = fields["IDNAME"].flatMap { id in disks.first { $0.kernelWWID == id || $0.wwid == id } }
            if let disk = byID ?? byName, disk.role != .system {
                let device = fields["DEVNAME"] ?? disk.devnode
                return "\(devicesFile) lists \(device) (\(disk.wwid ?? "no WWID")), which is not a system disk; LVM would activate its volume groups: remove it with 'lvmdevices --deldev \(device)'"
            }
        }
        return nil
    }

    static func escape(_ s: String) -> String {
        var out = ""
        for c in s {
            if "\\^$.|?*+()[]{}".contains(c) { out.append("\\") }
            out.append(c)
        }
        return out
    }
}
