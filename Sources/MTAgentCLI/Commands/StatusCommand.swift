import ArgumentParser
import Foundation
import Logging
import MTAgentCore
import MTAgentLinux
import MTAgentService
import MTAgentSetup

/// `mt-agent status`: the running service, like `systemctl status` — exit 3 when it is not running.
struct StatusCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "status",
        abstract: "Show the running service: groups, pairs, recovery points, RPO lag and problems to fix.",
        discussion: """
            Asks the running 'mt-agent serve' over its control socket. Exit status: 0 when it runs \
            and reports no problem, 1 when it reports problems, 3 when it is not running (like \
            'systemctl status'), 2 when the status cannot be read.

            Examples:
              mt-agent status
              mt-agent status --json
            """)

    @Option(help: ArgumentHelp("The configuration file (for the retention volume).", valueName: "path"))
    var config: String = AgentPaths.config
    @OptionGroup var output: OutputOptions

    func run() async throws {
        let status: ServiceStatus?
        do {
            let agent = try AgentConfig.load(from: RootedFiles(root: "/"), path: config)
            status = try await RecoveryAccess.status(retention: agent.retentionPath)
        } catch {
            throw fail("\(error)")
        }
        guard let status else {
            if output.json { print(#"{"running": false}"#) } else { print("mt-agent serve is not running") }
            throw ExitCode(3)
        }
        if output.json {
            print(try JSONOutput.encode(status))
        } else {
            print("mt-agent \(status.version): running (pid \(status.pid)) for \(Int(status.uptimeSeconds)) s, listening on \(status.listening)")
            print("retention \(status.retention): \(bytesText(status.retentionFreeBytes)) free, reserve \(bytesText(status.retentionReserveBytes))")
            let s = status.settings
            print("settings: rpo_threshold \(s.rpoThresholdSeconds) s, retention_window \(s.retentionWindowSeconds) s, "
                  + "space_policy \(s.spacePolicy), log_level \(s.logLevel)")
            for g in status.groups {
                var line = "\ngroup \(g.group): \(g.points) point\(g.points == 1 ? "" : "s")"
                if let oldest = g.oldestPoint, let newest = g.newestPoint { line += " (\(oldest) … \(newest))" }
                if let lag = g.rpoLagSeconds { line += ", RPO lag \(Int(lag)) s of \(g.rpoThresholdSeconds) s" }
                if let f = g.failover { line += ", failed over to point \(f.pointID) (\(f.status.rawValue))" }
                print(line)
                print(Table(header: ["PAIR", "TARGET", "STATE", "CONNECTED", "ACKED SEQ", "RESYNC", "RECEIVING", "JOURNAL"], rows: g.pairs.map { p in
                    [p.pair, p.target, p.state, p.connected ? "yes" : "no", "\(p.durableSeq)",
                     p.resyncPercent.map { "\($0)%" } ?? "-", p.connected ? bytesText(UInt64(p.throughputBytesPerSecond)) + "/s" : "-",
                     bytesText(p.journalBytes)]
                }).render())
            }
            if status.problems.isEmpty {
                print("\nno problems")
            } else {
                print("\nproblems:")
                for p in status.problems { print("  - \(p.message)\n    fix: \(p.fix)") }
            }
        }
        if !status.problems.isEmpty { throw ExitCode(1) }
    }
}
