import MTAgentLinux

/// Installs `69-mt-agent.rules`: a 180 s SCSI command timeout on VMware disks, and target disks
/// (listed by WWID under `/etc/mt-agent/targets/`) hidden from udisks and never marked ready
/// for systemd, so neither auto-mounts what the source machine left on them.
///
/// The rule text lives here, in the binary, so setup works from wherever the binary is;
/// `Packaging/udev/69-mt-agent.rules` is the same bytes (a test keeps them equal). Where a
/// package installed that file as `packagedPath`, the step is done as it is.
public struct UdevRulesStep: SetupStep {
    public let id = "udev"
    public let title = "Install udev rules: 180 s SCSI timeout on VMware disks, target disks never auto-mounted"
    public static let path = "/etc/udev/rules.d/69-mt-agent.rules"
    /// Where the .deb and .rpm install the rules.
    public static let packagedPath = "/usr/lib/udev/rules.d/69-mt-agent.rules"
    /// Where the replication side lists its target disks, one empty file per WWID.
    public static let targetsDirectory = "/etc/mt-agent/targets"

    public init() {}

    public var rebootReason: String? {
        "udev applies the rules to the disks attached now when it adds them at boot"
    }

    public func check(_ context: SetupContext) throws -> StepState {
        try context.ownedFileState(Self.path, content: Array(Self.rules.utf8), installing: "install \(Self.path)", what: " rules",
                                   packaged: Self.packagedPath)
    }

    public func apply(_ context: SetupContext) throws -> StepOutcome {
        try context.files.write(Self.path, Array(Self.rules.utf8), mode: 0o644)
        var notes: [String] = []
        if context.root == "/" {
            let reload = try? context.runner.run(["udevadm", "control", "--reload"])
            if reload?.status != 0 { notes.append("udevadm control --reload failed; udev reads the rules at the next boot") }
        }
        return StepOutcome(summary: "installed \(Self.path)", rebootReason: rebootReason, notes: notes)
    }

    public static let rules = """
        # mt-agent: udev rules of a failback master target. 'mt-agent setup' installs this file as
        # /etc/udev/rules.d/69-mt-agent.rules and 'mt-agent setup --revert' removes it; the packages
        # install the same file as /usr/lib/udev/rules.d/69-mt-agent.rules, and setup then adds no
        # copy of its own.

        ACTION=="remove", GOTO="mt_agent_end"
        SUBSYSTEM!="block", GOTO="mt_agent_end"

        # VMware virtual disks: wait up to 180 s for a SCSI command before failing it, so that a
        # datastore failover or a VM stun stalls replication I/O instead of failing it.
        ENV{DEVTYPE}=="disk", ATTRS{vendor}=="VMware*", ATTR{device/timeout}="180"

        # Disks assigned to a replication pair: a file named by the disk's WWID (its ID_SERIAL,
        # e.g. 36000c29...) under /etc/mt-agent/targets/. Their partitions, filesystems, volume
        # groups and arrays are the source machine's: keep udisks from showing or mounting them and
        # systemd from treating them as ready (no fstab mount, no swap). Partitions carry their
        # disk's ID_SERIAL, so the rule covers them too.
        ENV{ID_SERIAL}=="?*", TEST=="/etc/mt-agent/targets/$env{ID_SERIAL}", ENV{UDISKS_IGNORE}="1", ENV{UDISKS_AUTO}="0", ENV{SYSTEMD_READY}="0"

        LABEL="mt_agent_end"

        """
}
