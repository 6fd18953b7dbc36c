import ArgumentParser
import MTAgentCore

struct DisksCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "disks",
        abstract: "List every block disk with its SCSI address, stable identity, partitions and role.",
        discussion: """
            Live, disks are enumerated with libudev and probed with libblkid (run as root for \
            filesystem details). With --root, the same inventory is read from a captured tree.

            Examples:
              mt-agent disks
              mt-agent disks --json | jq '.disks[] | {name, hctl, wwid}'
              mt-agent disks --root /var/tmp/mt-capture
            """)

    @OptionGroup var system: SystemOptions
    @OptionGroup var output: OutputOptions

    func run() throws {
        let inventory = try system.inventory()
        if output.json {
            print(try JSONOutput.encode(inventory))
        } else {
            print(DiskTable.render(inventory), terminator: "")
        }
        for warning in inventory.warnings + inventory.disks.flatMap(\.warnings) {
            printError("warning: \(warning)")
        }
    }
}
