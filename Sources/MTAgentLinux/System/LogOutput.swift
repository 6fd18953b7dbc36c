import Glibc
import Logging
import Synchronization

/// Where mt-agent's logs go: stderr, as lines journald understands when it reads them.
public enum LogOutput {
    /// Under systemd with stderr connected to the journal (`JOURNAL_STREAM` set), each line starts
    /// with its syslog priority (`<3>` error … `<7>` debug), so `journalctl -p warning` filters them
    /// and the timestamp journald adds is not repeated; otherwise swift-log's plain stderr lines.
    ///
    /// Every handler made here logs at one process-wide level (`level`), so `serve` can change it
    /// on a configuration reload for every logger it has already handed out.
    public static func handler(label: String) -> any LogHandler {
        var upstream: any LogHandler
        if let stream = getenv("JOURNAL_STREAM").map({ String(cString: $0) }), !stream.isEmpty {
            upstream = JournalLogHandler(label: label)
        } else {
            upstream = StreamLogHandler.standardError(label: label)
        }
        // The shared level filters; the upstream handler writes whatever reaches it.
        upstream.logLevel = .trace
        return SharedLevelLogHandler(upstream: upstream)
    }

    private static let sharedLevel = Mutex<Logger.Level>(.info)

    /// The level of every logger whose handler was made here; setting any of them sets this.
    public static var level: Logger.Level {
        get { sharedLevel.withLock { $0 } }
        set { sharedLevel.withLock { $0 = newValue } }
    }

    /// The syslog priority of a level (sd-daemon(3)).
    public static func priority(_ level: Logger.Level) -> Int {
        switch level {
        case .trace, .debug: 7
        case .info: 6
        case .notice: 5
        case .warning: 4
        case .error: 3
        case .critical: 2
        }
    }
}

/// One line per message on stderr: `<priority>label: key=value … message`, metadata sorted.
public struct JournalLogHandler: LogHandler {
    public var metadata: Logger.Metadata = [:]
    public var logLevel: Logger.Level = .info
    let label: String

    public init(label: String) { self.label = label }

    public subscript(metadataKey key: String) -> Logger.Metadata.Value? {
        get { metadata[key] }
        set { metadata[key] = newValue }
    }

    public func log(event: LogEvent) {
        let all = metadata.merging(event.metadata ?? [:]) { $1 }
        let fields = all.sorted { $0.key < $1.key }.map { "\($0.key)=\($0.value)" }.joined(separator: " ")
        // One write per line, so lines of concurrent tasks never interleave.
        let line = "<\(LogOutput.priority(event.level))>\(label): \(fields.isEmpty ? "" : fields + " ")\(event.message)\n"
        _ = line.withCString { write(STDERR_FILENO, $0, strlen($0)) }
    }
}

/// A handler whose level is `LogOutput.level`, shared by the whole process.
struct SharedLevelLogHandler: LogHandler {
    var upstream: any LogHandler

    var logLevel: Logger.Level {
        get { LogOutput.level }
        set { LogOutput.level = newValue }
    }

    var metadata: Logger.Metadata {
        get { upstream.metadata }
        set { upstream.metadata = newValue }
    }

    subscript(metadataKey key: String) -> Logger.Metadata.Value? {
        get { upstream[metadataKey: key] }
        set { upstream[metadataKey: key] = newValue }
    }

    func log(event: LogEvent) { upstream.log(event: event) }
}
