import ArgumentParser
import MTAgentCore
import MTAgentJournal
import MTAgentService

/// `mt-agent points`: the recovery points a group can be failed over to.
struct PointsCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "points",
        abstract: "List the recovery points of each group, newest first.",
        discussion: """
            Only points every pair of the group can be rolled back to are listed. 'latest' and \
            'latest-app' mark what 'mt-agent failover --point latest|latest-app' would choose; \
            '*' marks the point a failed-over group is at.

            Examples:
              mt-agent points
              mt-agent points --group sql01 --json
            """)

    @Option(help: "Only this consistency group.") var group: String?
    @OptionGroup var recovery: RecoveryOptions
    @OptionGroup var output: OutputOptions

    func validate() throws {
        if let group { try requireIdentifier(group, .group, flag: "--group") }
    }

    func run() async throws {
        let groups = try await recovery.run(ControlRequest(command: .points, group: group)).points ?? []
        if output.json {
            struct GroupRow: Codable {
                var group: String
                var pairs: [String]
                @Nullable var failover: FailoverRow? = nil
                var points: [PointRow]
                var warnings: [String]
            }
            struct FailoverRow: Codable, Sendable, Equatable { var pointID: Int64; var status: String }
            print(try JSONOutput.encode(groups.map { g in
                GroupRow(group: g.group, pairs: g.pairs,
                         failover: g.failover.map { FailoverRow(pointID: $0.pointID, status: $0.status.rawValue) },
                         points: g.points.map(PointRow.init), warnings: g.warnings)
            }))
            return
        }
        if groups.isEmpty { print("no consistency group on this master target (assign targets with 'mt-agent targets assign')") }
        for (index, g) in groups.enumerated() {
            if index > 0 { print("") }
            var heading = "group \(g.group): \(g.pairs.count) pair\(g.pairs.count == 1 ? "" : "s") (\(g.pairs.joined(separator: ", "))), \(g.points.count) point\(g.points.count == 1 ? "" : "s")"
            if let f = g.failover { heading += "; failed over to point \(f.pointID) (\(f.status.rawValue))" }
            print(heading)
            for w in g.warnings { print("  warning: \(w)") }
            guard !g.points.isEmpty else {
                print("  no recovery point yet")
                continue
            }
            print(Table(header: ["", "ID", "KIND", "NAME", "SOURCE TIME", "RECEIVED", "MARK"], rows: g.points.map { p in
                let row = PointRow(p)
                let marks = [p.latest ? "latest" : nil, p.latestApp ? "latest-app" : nil].compactMap { $0 }.joined(separator: ",")
                return [p.current ? "*" : "", "\(row.id)", row.kind, row.name.isEmpty ? "-" : row.name, row.sourceTime, row.receivedTime, marks]
            }).render())
        }
    }
}
