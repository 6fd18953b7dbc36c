import ArgumentParser
import Glibc
import MTAgentCore
import MTAgentJournal
import MTAgentService
import MTAgentSetup

/// `mt-agent failover`: stop a group's replication and roll its targets back to a recovery point.
struct FailoverCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "failover",
        abstract: "Stop replication of a group and bring its target disks to a recovery point.",
        discussion: """
            Stops ingest for the group (its sender is told and stops), then rolls every target disk \
            of the group back to the point, saving what it overwrites first: run failover again with \
            another point (older or newer) as often as needed, then 'mt-agent commit'. A failover \
            killed at any moment is finished by the next failover or by the service's next start.

            POINT is latest, latest-app, a point id from 'mt-agent points', or a time — ISO 8601 \
            (2026-11-26T20:00:00Z) or @unix-seconds — meaning the newest point taken at or before it.

            Examples:
              mt-agent failover --group sql01 --point latest-app --yes
              mt-agent failover --group sql01 --point 2026-11-26T19:30:00Z --yes
              mt-agent failover --group sql01 --point 1234 --json --yes
            """)

    @Option(help: "The consistency group.") var group: String
    @Option(help: ArgumentHelp("latest, latest-app, a point id, or a time.", valueName: "point")) var point: String
    @Flag(help: "Do it without asking (required when stdin is not a terminal).") var yes = false
    @Flag(help: "Fail over even while a pair of the group is resyncing (that resync stops; points from before it stay exact).")
    var force = false
    @OptionGroup var recovery: RecoveryOptions
    @OptionGroup var output: OutputOptions

    func validate() throws {
        try requireIdentifier(group, .group, flag: "--group")
        guard PointSelector(point) != nil else {
            throw ValidationError("--point \(point) is not latest, latest-app, a point id or a time (ISO 8601 like 2026-11-26T20:00:00Z, or @unix-seconds)")
        }
    }

    func run() async throws {
        if !yes {
            guard isatty(STDIN_FILENO) == 1 else {
                throw fail("failover stops replication of group \(group) and rewrites its target disks: pass --yes to confirm")
            }
            printError("This stops replication of group \(group) and rolls its target disks back to point \(point). Continue? [y/N]")
            guard let answer = readLine(), ["y", "yes"].contains(answer.lowercased()) else { throw fail("not confirmed; nothing changed") }
        }
        let meter = RollbackMeter(enabled: isatty(STDERR_FILENO) == 1 && !output.json)
        // Tests kill the real binary mid-rollback here; it only matters when this process does the
        // rollback (no service running).
        let failpoint = Failpoint.parse(getenv("MT_AGENT_FAILPOINT").map { String(cString: $0) })
        let answer = try await recovery.run(ControlRequest(command: .failover, group: group, point: point, force: force)) { event in
            if let p = event.progress {
                meter.show(p)
                try? failpoint.hit("failover.\(p.phase.rawValue)")
            }
        }
        meter.finish()
        guard let report = answer.failover else { throw fail("the answer carried no failover report") }
        if output.json {
            print(try JSONOutput.encode(report))
            return
        }
        let p = report.point
        print("group \(report.group) is at point \(p.id) (\(p.kind.name)\(p.name.isEmpty ? "" : " \"\(p.name)\""), source time \(PointSummary.format(p.sourceTime)))")
        print(Table(header: ["PAIR", "TARGET", "SAVED", "FORWARD", "UNDONE", "RECORDS"], rows: report.pairs.map {
            [$0.pair, $0.target, bytesText($0.stats.savedBytes), bytesText($0.stats.forwardBytes), bytesText($0.stats.undoBytes), "\($0.stats.undoRecords)"]
        }).render())
        print("took \(String(format2: report.seconds)) s; replication of the group stays stopped: fail over to another point, or 'mt-agent commit --group \(report.group)'")
    }
}

/// One progress line on a terminal, rewritten in place.
final class RollbackMeter: @unchecked Sendable {
    let enabled: Bool
    init(enabled: Bool) { self.enabled = enabled }

    func show(_ p: FailoverProgress) {
        guard enabled else { return }
        let pct = p.bytesTotal > 0 ? p.bytesDone * 100 / p.bytesTotal : 100
        let line = "\rpair \(p.pairIndex)/\(p.pairCount) \(p.pair): \(p.phase.rawValue) \(pct)% of \(bytesText(p.bytesTotal))      "
        _ = line.withCString { write(STDERR_FILENO, $0, strlen($0)) }
    }

    func finish() {
        guard enabled else { return }
        _ = "\n".withCString { write(STDERR_FILENO, $0, 1) }
    }
}
