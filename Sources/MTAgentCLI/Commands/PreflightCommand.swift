import ArgumentParser
import MTAgentCore
import MTAgentSetup

struct PreflightCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "preflight",
        abstract: "Run every check that must pass before reprotect or failback. Exit 1 when one fails.",
        discussion: """
            Disk identity (EnableUUID, clones), SCSI controller, VMware Tools, /etc/hosts, clock \
            synchronisation, disk count, root not on LVM, OS and packages, configuration, the \
            retention volume, the TLS identity and passphrase key, and the running service. Each \
            line is PASS, WARN, FAIL or SKIP; failures and warnings say how to fix them.

            Examples:
              mt-agent preflight
              mt-agent preflight --json | jq '.checks[] | select(.status == "fail")'
              mt-agent preflight --root /var/tmp/mt-capture
            """)

    @OptionGroup var system: SystemOptions
    @OptionGroup var output: OutputOptions

    @Option(help: ArgumentHelp("The retention volume to check (default: from the configuration, else /mnt/retention).", valueName: "path"))
    var retention: String?

    func run() throws {
        let report: CheckReport
        do {
            report = try Preflight(root: system.root, retentionPath: retention, logger: system.makeLogger()).run()
        } catch {
            throw fail("\(error)")
        }
        let failed = report.checks.filter { $0.status == .fail }.count
        let warned = report.checks.filter { $0.status == .warn }.count
        try finish(
            report, json: output.json,
            verdict: failed == 0 ? "preflight: ready (\(warned) warnings)" : "preflight: \(failed) checks failed, \(warned) warnings")
    }
}
