import ArgumentParser
import MTAgentService

/// `mt-agent commit`: make a failover final.
struct CommitCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "commit",
        abstract: "Make a group's failover final: drop its journal and release its target disks.",
        discussion: """
            After commit the group's recovery points are gone and its targets are no longer assigned: \
            they are ordinary disks holding the chosen point. Replicating again starts with \
            'mt-agent targets assign' and a new resync.

            Example:
              mt-agent commit --group sql01
            """)

    @Option(help: "The consistency group.") var group: String
    @OptionGroup var recovery: RecoveryOptions
    @OptionGroup var output: OutputOptions

    func validate() throws { try requireIdentifier(group, .group, flag: "--group") }

    func run() async throws {
        let answer = try await recovery.run(ControlRequest(command: .commit, group: group))
        guard let report = answer.commit else { throw fail("the answer carried no commit report") }
        if output.json {
            print(try JSONOutput.encode(report))
            return
        }
        print("group \(report.group) committed at point \(report.pointID): \(bytesText(report.journalBytesFreed)) of journal dropped; "
            + "released \(report.targets.joined(separator: ", "))")
    }
}
