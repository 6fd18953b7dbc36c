import Glibc
import Logging

/// Where mt-agent's logs go: stderr, as lines journald understands when it reads them.
public enum LogOutput {
    /// Under systemd with stderr connected to the journal (`JOURNAL_STREAM` set), each line starts
    /// with its syslog priority (`<3>` error … `<7>` debug), so `journalctl -p warning` filters them
    /// and the timestamp journald adds is not repeated; otherwise swift-log's plain stderr lines.
    public static func handler(label: String) -> any LogHandler {
        if let stream = getenv("JOURNAL_STREAM").map({ String(cString: $0) }), !stream.isEmpty {
            return JournalLogHandler(label: label)
        }
        return StreamLogHandler.standardError(label: label)
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
