/// The checks `mt-agent preflight` runs that need no more than facts already gathered: each
/// takes plain values and returns a `CheckResult`, so the rules are tested without a machine.
public enum PreflightRules {
    /// VMware allows 4 SCSI controllers × 15 disks; a master target cannot take more.
    public static let maxDisks = 60

    /// VMware's guidance is an LSI Logic controller (SAS or Parallel) for a master target's
    /// replica disks; PVSCSI works but is not what the failback runbook was validated with, so it
    /// is a warning, not a failure.
    public static func scsiController(_ inventory: Inventory) -> CheckResult {
        guard inventory.host.hypervisor == "vmware" else {
            return CheckResult(id: "scsi-controller", status: .skip, message: "not a VMware guest")
        }
        let scsi = inventory.disks.filter { $0.transport == .scsi && [nil, 0, 0xE].contains($0.scsiDeviceType) }
        let pvscsi = scsi.filter { $0.driver == "vmw_pvscsi" }
        let lsi = scsi.filter { ["mptsas", "mptspi", "mpt2sas", "mpt3sas"].contains($0.driver ?? "") }
        if !pvscsi.isEmpty {
            return CheckResult(
                id: "scsi-controller", status: .warn,
                message: "\(pvscsi.count) disk(s) on a VMware Paravirtual (PVSCSI) controller: "
                    + pvscsi.map(\.name).joined(separator: ", "),
                fix: "VMware's guidance for a master target is an LSI Logic SAS controller: with the VM powered off, "
                    + "add an LSI Logic SAS controller and attach the replica disks to it.",
                subjects: pvscsi.map { CheckResult.Subject($0, detail: "vmw_pvscsi") })
        }
        if scsi.isEmpty {
            return CheckResult(id: "scsi-controller", status: .skip, message: "no SCSI disks")
        }
        let drivers = Set(scsi.compactMap(\.driver)).sorted().joined(separator: ", ")
        return CheckResult(
            id: "scsi-controller", status: lsi.count == scsi.count ? .pass : .warn,
            message: "SCSI controllers: \(drivers)",
            fix: lsi.count == scsi.count ? nil : "use an LSI Logic SAS controller for the master target's disks")
    }

    public static func diskCount(_ inventory: Inventory) -> CheckResult {
        let disks = inventory.disks.filter { $0.transport == .scsi && [nil, 0, 0xE].contains($0.scsiDeviceType) }
        if disks.count > maxDisks {
            return CheckResult(
                id: "disk-count", status: .fail,
                message: "\(disks.count) SCSI disks attached; a master target holds at most \(maxDisks)",
                fix: "spread the protected machines over more master targets")
        }
        return CheckResult(id: "disk-count", status: .pass, message: "\(disks.count) of at most \(maxDisks) SCSI disks attached")
    }

    /// Replicated disks bring the source machines' volume groups, often with the same names as
    /// the master target's own (VMs made from one template): root must not depend on LVM.
    public static func rootNotOnLVM(_ inventory: Inventory) -> CheckResult {
        func holdsRoot(_ d: Disk) -> Bool { d.mountpoints.contains("/") }
        guard let root = inventory.disks.first(where: holdsRoot) else {
            if inventory.disks.contains(where: { $0.partitions.contains { $0.mountpoints.contains("/") } }) {
                return CheckResult(id: "root-lvm", status: .pass, message: "/ is on a plain partition")
            }
            return CheckResult(id: "root-lvm", status: .warn, message: "cannot tell which device holds /")
        }
        if root.transport == .dm, root.dmUUID?.hasPrefix("LVM-") == true {
            return CheckResult(
                id: "root-lvm", status: .fail,
                message: "/ is on the LVM logical volume \(root.dmName ?? root.name)",
                fix: "install the master target with / on a plain partition: replicated disks carry the source "
                    + "machines' volume groups, whose names can clash with this one's",
                subjects: [CheckResult.Subject(root)])
        }
        return CheckResult(id: "root-lvm", status: .pass, message: "/ is not on LVM (\(root.name))")
    }

    /// Every address of every NIC must resolve to the hostname through /etc/hosts, so the
    /// configuration and process servers reach the master target by name whatever DNS says.
    public static func hostsFile(hostname: String?, addresses: [String], hosts: String?) -> CheckResult {
        guard let hostname, !hostname.isEmpty else {
            return CheckResult(id: "hosts", status: .fail, message: "the hostname is not set", fix: "set it with hostnamectl set-hostname NAME")
        }
        guard let hosts else {
            return CheckResult(id: "hosts", status: .fail, message: "/etc/hosts is missing", fix: "create /etc/hosts with a line per address: ADDRESS \(hostname)")
        }
        let short = hostname.split(separator: ".").first.map(String.init) ?? hostname
        var names: [String: Set<String>] = [:]
        for line in hosts.split(separator: "\n") {
            let fields = line.split(separator: "#", maxSplits: 1, omittingEmptySubsequences: false)[0]
                .split(whereSeparator: { $0 == " " || $0 == "\t" }).map(String.init)
            guard fields.count >= 2 else { continue }
            names[fields[0], default: []].formUnion(fields.dropFirst())
        }
        let missing = addresses.filter { names[$0].map { $0.contains(hostname) || $0.contains(short) } != true }
        if addresses.isEmpty {
            return CheckResult(id: "hosts", status: .warn, message: "no network address found besides loopback")
        }
        if missing.isEmpty {
            return CheckResult(id: "hosts", status: .pass, message: "\(hostname) resolves to every address in /etc/hosts: \(addresses.joined(separator: ", "))")
        }
        return CheckResult(
            id: "hosts", status: .fail,
            message: "/etc/hosts does not map \(hostname) to \(missing.joined(separator: ", "))",
            fix: "add to /etc/hosts: " + missing.map { "\($0) \(hostname)" }.joined(separator: "; "))
    }

    public static func vmwareTools(hypervisor: String?, running: Bool) -> CheckResult {
        guard hypervisor == "vmware" else {
            return CheckResult(id: "vmware-tools", status: .skip, message: "not a VMware guest")
        }
        return running
            ? CheckResult(id: "vmware-tools", status: .pass, message: "VMware Tools (vmtoolsd) is running")
            : CheckResult(
                id: "vmware-tools", status: .fail, message: "VMware Tools (vmtoolsd) is not running",
                fix: "install and start open-vm-tools (apt-get install open-vm-tools / yum install open-vm-tools; systemctl enable --now vmtoolsd)")
    }

    /// nil when the clock state could not be read (e.g. a captured `--root` tree).
    public static func timeSync(synchronized: Bool?) -> CheckResult {
        switch synchronized {
        case true?: CheckResult(id: "time-sync", status: .pass, message: "the system clock is synchronised")
        case false?:
            CheckResult(
                id: "time-sync", status: .fail,
                message: "the system clock is not synchronised (recovery point times and RPO depend on it)",
                fix: "enable NTP: timedatectl set-ntp true, or configure chronyd/ntpd")
        case nil: CheckResult(id: "time-sync", status: .skip, message: "clock state not available for this root")
        }
    }
}
