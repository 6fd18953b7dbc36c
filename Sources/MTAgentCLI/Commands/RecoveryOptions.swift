import ArgumentParser
import Foundation
import Glibc
import Logging
import MTAgentCore
import MTAgentJournal
import MTAgentLinux
import MTAgentService
import MTAgentSetup

/// What `points`, `failover` and `commit` share: the configuration (for the retention volume) and
/// the way to the journals (the running service, or directly).
struct RecoveryOptions: ParsableArguments {
    @Option(help: ArgumentHelp("The configuration file (for the retention volume).", valueName: "path"))
    var config: String = AgentPaths.config

    @Option(name: .customLong("log-level"), help: "How much to log to stderr.")
    var logLevel: Logger.Level = .warning

    /// Sends `request` and returns the final answer, or ends the command with its error (exit 2).
    func run(_ request: ControlRequest, events: @escaping @Sendable (ControlEvent) -> Void = { _ in }) async throws -> ControlEvent {
        var logger = Logger(label: "mt-agent", factory: LogOutput.handler)
        logger.logLevel = logLevel
        let answer: ControlEvent
        do {
            let agent = try AgentConfig.load(from: RootedFiles(root: "/"), path: config)
            (answer, _) = try await RecoveryAccess.run(request, retention: agent.retentionPath,
                                                allowFileTargets: agent.allowFileTargets, logger: logger, events: events)
        } catch {
            throw fail("\(error)")
        }
        if let error = answer.error { throw fail(error) }
        return answer
    }
}

/// A point as `points` prints it in JSON.
struct PointRow: Codable {
    var id: Int64
    /// The sender's TAG id (docs/PROTOCOL.md §7): what a sender knows the point by; `id` is the catalog's.
    var tagID: UInt64
    var kind: String
    var name: String
    var sourceTime: String
    var sourceTimeNs: UInt64
    var receivedTime: String
    var latest: Bool
    var latestApp: Bool
    var current: Bool

    init(_ p: ListedPoint) {
        id = p.point.id
        tagID = p.point.tagID
        kind = p.point.kind.name
        name = p.point.name
        sourceTime = PointSummary.format(p.point.sourceTime)
        sourceTimeNs = p.point.sourceTime
        receivedTime = PointSummary.format(UInt64(max(0, p.point.recordedAt.timeIntervalSince1970) * 1e9))
        latest = p.latest; latestApp = p.latestApp; current = p.current
    }
}

func bytesText(_ bytes: UInt64) -> String {
    bytes >= 1 << 30 ? "\(String(format2: Double(bytes) / Double(1 << 30))) GiB"
        : bytes >= 1 << 20 ? "\(String(format2: Double(bytes) / Double(1 << 20))) MiB"
        : "\(bytes / 1024) KiB"
}
