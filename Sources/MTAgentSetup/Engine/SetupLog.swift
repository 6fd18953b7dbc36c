import Glibc
import Logging
import MTAgentLinux

/// The time, for log lines; behind a protocol so tests can fix it.
public protocol SetupClock: Sendable {
    func now() -> timespec
}

public struct SystemClock: SetupClock {
    public init() {}
    public func now() -> timespec {
        var ts = timespec()
        clock_gettime(CLOCK_REALTIME, &ts)
        return ts
    }
}

/// `/var/log/mt-agent/setup.log`: one timestamped line per action of every run that changed
/// something, appended, so the file tells the machine's whole setup history:
/// `2024-05-02T09:14:07.512Z info [multipath] replaced file file=/etc/multipath.conf …`.
/// Opened on the first line, so a run that changes nothing does not create or touch it.
final class SetupLogFile: @unchecked Sendable {
    let path: String
    let clock: SetupClock
    private let lock = Lock()
    private var fd: Int32 = -1
    private var failed = false

    init(path: String, clock: SetupClock) {
        self.path = path
        self.clock = clock
    }

    deinit {
        if fd >= 0 { close(fd) }
    }

    func append(_ line: String) {
        lock.withLock {
            if fd < 0 && !failed {
                try? HostFile.makeDirectories(HostFile.dirname(path), mode: 0o755)
                fd = open(path, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0o640)
                failed = fd < 0
            }
            guard fd >= 0 else { return }
            let text = Self.timestamp(clock.now()) + " " + line + "\n"
            _ = text.withCString { Glibc.write(fd, $0, strlen($0)) }
        }
    }

    /// Makes the lines written so far durable (end of a run).
    func sync() {
        lock.withLock { if fd >= 0 { fsync(fd) } }
    }

    static func timestamp(_ ts: timespec) -> String {
        var seconds = ts.tv_sec
        var tm = tm()
        gmtime_r(&seconds, &tm)
        func pad(_ n: Int32, _ width: Int = 2) -> String {
            let s = String(n)
            return String(repeating: "0", count: max(0, width - s.count)) + s
        }
        return "\(pad(tm.tm_year + 1900, 4))-\(pad(tm.tm_mon + 1))-\(pad(tm.tm_mday))T"
            + "\(pad(tm.tm_hour)):\(pad(tm.tm_min)):\(pad(tm.tm_sec)).\(pad(Int32(ts.tv_nsec / 1_000_000), 3))Z"
    }
}

/// A swift-log handler that appends to the setup log: level, the step, the message, then the
/// other metadata as `key=value`.
struct SetupLogHandler: LogHandler {
    let file: SetupLogFile
    var metadata: Logger.Metadata = [:]
    var logLevel: Logger.Level = .info

    subscript(metadataKey key: String) -> Logger.Metadata.Value? {
        get { metadata[key] }
        set { metadata[key] = newValue }
    }

    func log(event: LogEvent) {
        var all = metadata
        if let extra = event.metadata { all.merge(extra) { _, new in new } }
        let step = all.removeValue(forKey: "setup.step").map { "[\($0)]" } ?? "[-]"
        let rest = all.sorted { $0.key < $1.key }.map { "\($0.key)=\(Self.quoted("\($0.value)"))" }
        file.append(([event.level.rawValue, step, "\(event.message)"] + rest).joined(separator: " "))
    }

    private static func quoted(_ value: String) -> String {
        value.contains(" ") || value.isEmpty ? "\"\(value)\"" : value
    }
}
