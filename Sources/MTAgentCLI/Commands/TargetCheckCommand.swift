import ArgumentParser
import Logging
import MTAgentCore
import MTAgentLinux
import MTAgentService

/// `mt-agent check target DISK`: every target rule of DESIGN §4 for one disk.
struct TargetCheckCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "target",
        abstract: "Check that a disk may be a replication target (assigned, unused, large enough).",
        discussion: """
            DISK is a WWID or, for labs, a path to a loop device (a file only with allow_file_targets \
            = true), resolved before the rules. Exit 0 when every rule \
            passes, 1 when one fails.

            Examples:
              mt-agent check target 36000c2912345678901234567890abcde
              mt-agent check target /dev/loop7 --source-size 2147483648 --json
            """)

    @Argument(help: "WWID, or an absolute path to a loop device or file.") var disk: String
    @Option(name: .customLong("source-size"), help: "Also check the disk holds a source of this many bytes.") var sourceSize: UInt64?
    @OptionGroup var catalogued: TargetsCommand.Catalogued
    @OptionGroup var output: OutputOptions

    func run() throws {
        let (catalog, agent) = try catalogued.open()
        let logger = Logger(label: "mt-agent")
        let store = JournalStore(catalog: catalog, retentionPath: agent.retentionPath,
                                 inspector: TargetInspector.forRoot("/", logger: logger), logger: logger,
                                 allowFileTargets: agent.allowFileTargets)
        let facts: TargetFacts
        do {
            facts = try store.facts(identity: disk, pairID: catalog.pairs().first { $0.target == disk }?.id, group: nil, sourceSize: sourceSize).0
        } catch {
            throw fail("\(error)")
        }
        try finish(CheckReport(checks: TargetRules.evaluate(facts)), json: output.json)
    }
}
