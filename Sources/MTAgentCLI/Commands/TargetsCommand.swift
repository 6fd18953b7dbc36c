import ArgumentParser
import Logging
import MTAgentCore
import MTAgentJournal
import MTAgentLinux
import MTAgentService
import MTAgentSetup

/// `mt-agent targets`: which disks senders may replicate onto, by stable identity.
struct TargetsCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "targets",
        abstract: "Assign, list and release the disks pairs may replicate onto.",
        subcommands: [Assign.self, Unassign.self, List.self])

    struct Catalogued: ParsableArguments {
        @Option(help: ArgumentHelp("The configuration file (for the retention volume holding the catalog).", valueName: "path"))
        var config: String = AgentPaths.config

        func open() throws -> (Catalog, AgentConfig) {
            do {
                let agent = try AgentConfig.load(from: RootedFiles(root: "/"), path: config)
                return (try Catalog(path: JournalStore.catalogPath(retention: agent.retentionPath)), agent)
            } catch {
                throw fail("\(error)")
            }
        }
    }

    struct Assign: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Let pairs of GROUP replicate onto DISK.",
            discussion: """
                DISK is a WWID as 'mt-agent disks' shows it (scsi_id form, e.g. 36000c29…), or for labs \
                and tests an absolute path to a loop device (a regular file only with allow_file_targets \
                = true in the config). The path is resolved before the rules. The disk must pass every \
                target rule ('mt-agent check target DISK').

                Examples:
                  mt-agent targets assign 36000c2912345678901234567890abcde --group sql01
                  mt-agent targets assign /dev/loop7 --group lab
                """)
        @Argument(help: "WWID, or an absolute path to a loop device or file.") var disk: String
        @Option(help: "Consistency group.") var group: String
        @Flag(help: "Assign even when a target rule fails now (e.g. the disk is still mounted); never a regular file without allow_file_targets.") var force = false
        @OptionGroup var catalogued: Catalogued
        @OptionGroup var output: OutputOptions

        func validate() throws { try requireIdentifier(group, .group, flag: "--group") }

        func run() throws {
            let (catalog, agent) = try catalogued.open()
            let store = JournalStore(catalog: catalog, retentionPath: agent.retentionPath,
                                     inspector: TargetInspector.forRoot("/", logger: Logger(label: "mt-agent")), logger: Logger(label: "mt-agent"),
                                     allowFileTargets: agent.allowFileTargets)
            let (facts, _) = try store.facts(identity: disk, pairID: nil, group: group, sourceSize: nil)
            let problems = TargetRules.refusals(facts).filter { $0.id != "target.assigned" }
            // --force waits out a state that can change (mounted, held); a file never becomes a disk.
            if let bad = problems.first(where: { $0.id == "target.kind" }) ?? (force ? nil : problems.first) {
                throw fail("\(disk) cannot be a target: \(bad.message)" + (bad.fix.map { " — \($0)" } ?? ""))
            }
            do { try catalog.assign(target: disk, group: group) } catch { throw fail("\(error)") }
            if output.json {
                print(try JSONOutput.encode(TargetRow(target: disk, group: group)))
            } else {
                print("assigned \(disk) to group \(group)")
            }
        }
    }

    struct Unassign: ParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Stop pairs from replicating onto DISK.",
                                                        discussion: "Example:\n  mt-agent targets unassign /dev/loop7")
        @Argument var disk: String
        @OptionGroup var catalogued: Catalogued

        func run() throws {
            let (catalog, _) = try catalogued.open()
            do { try catalog.unassign(target: disk) } catch { throw fail("\(error)") }
            print("unassigned \(disk)")
        }
    }

    struct List: ParsableCommand {
        static let configuration = CommandConfiguration(abstract: "List assigned targets and the pairs on them.",
                                                        discussion: "Examples:\n  mt-agent targets list\n  mt-agent targets list --json")
        @OptionGroup var catalogued: Catalogued
        @OptionGroup var output: OutputOptions

        func run() throws {
            let (catalog, _) = try catalogued.open()
            let rows: [TargetRow]
            do {
                let pairs = try catalog.pairs()
                rows = try catalog.assignments().map { a in
                    let pair = pairs.first { $0.target == a.target }
                    return TargetRow(target: a.target, group: a.group, pair: pair?.id, state: pair?.state.rawValue)
                }
            } catch { throw fail("\(error)") }
            if output.json {
                print(try JSONOutput.encode(rows))
            } else {
                print(Table(header: ["TARGET", "GROUP", "PAIR", "STATE"],
                            rows: rows.map { [$0.target, $0.group, $0.pair ?? "-", $0.state ?? "-"] }).render())
            }
        }
    }
}

struct TargetRow: Codable {
    var target: String
    var group: String
    @Nullable var pair: String? = nil
    @Nullable var state: String? = nil
}
