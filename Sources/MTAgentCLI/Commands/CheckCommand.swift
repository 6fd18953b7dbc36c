import ArgumentParser
import MTAgentCore

struct CheckCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "check",
        abstract: "Run one check; PASS/WARN/FAIL/SKIP with the fix. Exit 1 when a check fails.",
        subcommands: [EnableUUIDCheckCommand.self, RetentionCheckCommand.self, TargetCheckCommand.self])
}

struct EnableUUIDCheckCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "enable-uuid",
        abstract: "Check that every SCSI disk has a stable, unique identity (VMware disk.EnableUUID=TRUE).",
        discussion: """
            Fails for each SCSI disk without an NAA or EUI-64 designator in VPD page 0x83, and for \
            every set of disks that share one identity (VMs cloned from one template). Disks that are \
            not SCSI (virtio-blk, NVMe, loop, zram) are skipped.

            Examples:
              mt-agent check enable-uuid
              mt-agent check enable-uuid --json
            """)

    @OptionGroup var system: SystemOptions
    @OptionGroup var output: OutputOptions

    func run() throws {
        let inventory = try system.inventory()
        let report = CheckReport(checks: EnableUUIDCheck.evaluate(inventory))
        try finish(report, json: output.json)
    }
}
