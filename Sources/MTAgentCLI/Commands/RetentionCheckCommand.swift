import ArgumentParser
import MTAgentCore
import MTAgentLinux

struct RetentionCheckCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "retention",
        abstract: "Check that a volume may hold the retention journal.",
        discussion: """
            The volume must be a mounted filesystem of its own, not FAT/FAT32/exFAT, with capacity, \
            read-write and not frozen (a 4 KiB write + fsync must finish within --probe-timeout), not \
            the system volume, not the volume of mt-agent's own install or state, not on a replication \
            target, not on a disk held by device-mapper or md (an LVM logical volume is a warning), and \
            with at least 256 MiB × (pairs + 4) free. Name a block device to check one that is not \
            mounted: libblkid says what it holds.

            Examples:
              mt-agent check retention
              mt-agent check retention /mnt/retention --pairs 8 --json
              mt-agent check retention /dev/sdb1
              mt-agent check retention --targets sdc,sdd
            """)

    @Argument(help: ArgumentHelp("The retention directory (a mount point) or its block device.", valueName: "path|device"))
    var path: String = RetentionRules.defaultPath

    @Option(help: "How many replication pairs the volume must hold: it needs 256 MiB × (pairs + 4) free.")
    var pairs: Int = 0

    @Option(
        help: ArgumentHelp(
            "Disks assigned as replication targets (names, /dev paths or WWIDs), comma-separated or repeated.",
            valueName: "disks"))
    var targets: [String] = []

    @Option(help: ArgumentHelp("Seconds to wait for the write + fsync probe before calling the volume frozen.", valueName: "seconds"))
    var probeTimeout: Double = 5

    @OptionGroup var system: SystemOptions
    @OptionGroup var output: OutputOptions

    func validate() throws {
        guard pairs >= 0 else { throw ValidationError("--pairs must be 0 or more") }
        guard probeTimeout > 0 else { throw ValidationError("--probe-timeout must be more than 0 seconds") }
    }

    func run() throws {
        let inspector = RetentionInspector.forRoot(
            system.root, logger: system.makeLogger(), probeTimeout: .milliseconds(Int(probeTimeout * 1000)))
        let report: CheckReport
        do {
            report = CheckReport(checks: try inspector.check(path: path, pairs: pairs, targets: targets))
        } catch {
            throw fail("\(error)")
        }
        try finish(report, json: output.json)
    }
}
