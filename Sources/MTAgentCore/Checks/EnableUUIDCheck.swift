/// `check enable-uuid`: every SCSI disk must carry a stable identity (VMware's
/// `disk.EnableUUID=TRUE`), and no two disks may share one (VMs cloned from one template).
public enum EnableUUIDCheck {
    public static let vmwareFix = """
        Power off the VM, then in the vSphere Client: Edit Settings → VM Options → Advanced → \
        General → Configuration Parameters → Add row: disk.EnableUUID = TRUE (case-sensitive, no quotes); \
        power on and run this check again.
        """
    public static let genericFix = """
        Give each disk a stable WWN or serial in the hypervisor (for VMware: set \
        disk.EnableUUID = TRUE in the VM's advanced configuration parameters with the VM powered off).
        """
    public static let duplicateFix = """
        Disks with the same identity cannot be told apart, so none of them can be used safely. \
        This usually means a VM or disk was cloned from a template: detach the copies or give them \
        new identities (for VMware, re-create the cloned virtual disks or the VM from a fresh template), \
        then run this check again.
        """

    /// Device-mapper and md devices are assembled from other disks and carry no VPD identity of
    /// their own; they are neither checked nor listed as skipped.
    static func isStacked(_ d: Disk) -> Bool { d.transport == .dm || d.transport == .md }

    public static func evaluate(_ inventory: Inventory) -> [CheckResult] {
        let disks = inventory.disks.filter { !isStacked($0) }
        var results = [identityResult(disks, hypervisor: inventory.host.hypervisor)]
        results.append(uniquenessResult(inventory.disks))
        let others = disks.filter { !isSCSIDisk($0) }
        if !others.isEmpty {
            results.append(
                CheckResult(
                    id: "enable-uuid.non-scsi", status: .skip,
                    message: "not SCSI disks, EnableUUID does not apply: "
                        + others.map { "\($0.name) (\(kind($0)))" }.joined(separator: ", "),
                    subjects: others.map { CheckResult.Subject($0, detail: kind($0)) }))
        }
        return results
    }

    /// SCSI direct-access (0) and RBC (0xE) devices; a virtual CD-ROM (5) has no identity to check.
    static func isSCSIDisk(_ d: Disk) -> Bool {
        d.transport == .scsi && [nil, 0, 0xE].contains(d.scsiDeviceType)
    }

    static func kind(_ d: Disk) -> String {
        d.transport == .scsi ? "scsi type \(d.scsiDeviceType.map(String.init) ?? "?")" : d.transport.rawValue
    }

    static func identityResult(_ disks: [Disk], hypervisor: String?) -> CheckResult {
        let scsi = disks.filter(isSCSIDisk)
        guard !scsi.isEmpty else {
            return CheckResult(id: "enable-uuid", status: .skip, message: "no SCSI disks found")
        }
        let missing = scsi.filter { !$0.hasStrongIdentity }
        if missing.isEmpty {
            return CheckResult(
                id: "enable-uuid", status: .pass,
                message: "all \(scsi.count) SCSI disks carry a stable NAA/EUI-64 identity",
                subjects: scsi.map { CheckResult.Subject($0) })
        }
        let names = missing.map { "\($0.name)" + ($0.hctl.map { " (\($0))" } ?? "") }.joined(separator: ", ")
        let noun = missing.count == 1 ? "SCSI disk has" : "SCSI disks have"
        return CheckResult(
            id: "enable-uuid", status: .fail,
            message: "\(missing.count) \(noun) no NAA or EUI-64 identity (disk.EnableUUID is off?): \(names)",
            fix: hypervisor == "vmware" || hypervisor == nil ? vmwareFix : genericFix,
            subjects: missing.map { CheckResult.Subject($0, detail: "no NAA or EUI-64 designator in VPD page 0x83") })
    }

    static func uniquenessResult(_ all: [Disk]) -> CheckResult {
        let byName = Dictionary(all.map { ($0.name, $0) }, uniquingKeysWith: { a, _ in a })
        let candidates = all.filter { !isStacked($0) && $0.wwid != nil }
        let groups = Dictionary(grouping: candidates, by: { $0.wwid! }).filter { $0.value.count > 1 }

        var clones: [Disk] = []
        var multipathed: [Disk] = []
        for (_, members) in groups.sorted(by: { $0.key < $1.key }) {
            if sharedMultipathHolder(members, byName: byName) {
                multipathed += members
            } else {
                clones += members
            }
        }
        if !clones.isEmpty {
            let sets = Dictionary(grouping: clones, by: { $0.wwid! }).sorted { $0.key < $1.key }
            let text = sets.map { wwid, members in
                members.map(\.name).joined(separator: " = ") + " (\(wwid))"
            }.joined(separator: "; ")
            return CheckResult(
                id: "unique-identity", status: .fail,
                message: "disks share one identity and cannot be told apart: \(text)",
                fix: duplicateFix,
                subjects: clones.map { CheckResult.Subject($0, detail: "identity shared with another disk") })
        }
        let note = multipathed.isEmpty ? "" : "; \(multipathed.count) paths of multipath devices share their LUN's identity, as expected"
        return CheckResult(
            id: "unique-identity", status: candidates.isEmpty ? .skip : .pass,
            message: candidates.isEmpty ? "no disk has an identity to compare" : "every disk identity is unique\(note)",
            subjects: multipathed.map { CheckResult.Subject($0, detail: "multipath path") })
    }

    /// Paths of one multipathed LUN legitimately share a WWID: all of them are held by the same
    /// dm-multipath map (dm uuid `mpath-…`).
    static func sharedMultipathHolder(_ members: [Disk], byName: [String: Disk]) -> Bool {
        let holderSets = members.map { Set($0.holders) }
        guard let common = holderSets.dropFirst().reduce(holderSets.first, { $0?.intersection($1) }) else { return false }
        return common.contains { byName[$0]?.dmUUID?.hasPrefix("mpath-") == true }
    }
}
