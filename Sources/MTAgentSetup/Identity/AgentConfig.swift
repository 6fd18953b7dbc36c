import Glibc
import MTAgentCore
import MTAgentLinux

/// `/etc/mt-agent/mt-agent.conf`: what `serve` listens on, where the retention volume is, the
/// replication policy and where the TLS identity and passphrase key live.
///
/// The format is deliberately plain — `key = value` lines, `#` comments, blank lines — so an admin
/// can edit it with any editor and a bad edit is reported as one line naming the key. Keys left out
/// keep their defaults.
public struct AgentConfig: Sendable, Equatable {
    public var listenAddress: String = "0.0.0.0"
    public var port: Int = 9443
    public var retentionPath: String = "/mnt/retention"
    public var rpoThreshold = ConfigDuration(text: "15m", seconds: 15 * 60)
    public var retentionWindow = ConfigDuration(text: "24h", seconds: 24 * 3600)
    public var appConsistentFrequency = ConfigDuration(text: "60m", seconds: 60 * 60)
    public var spacePolicy: SpacePolicy = .pruneOldest
    public var tlsCertificate: String = AgentPaths.tlsCertificate
    public var tlsKey: String = AgentPaths.tlsKey
    public var passphraseKey: String = AgentPaths.passphraseKey
    /// Where the Prometheus endpoint (`GET /metrics`) listens; nil (`off`) for none.
    public var metricsAddress: HostPort? = HostPort(host: "127.0.0.1", port: 9464)
    /// How much `serve` logs: trace, debug, info, notice, warning, error, critical.
    public var logLevel: String = "info"
    /// What a peer may cost (docs/PROTOCOL.md §3.3): from accept to WELCOME, heartbeats or not.
    public var handshakeTimeout = ConfigDuration(text: "10s", seconds: 10)
    /// Connections open at once, and those among them not yet authenticated.
    public var maxConnections = 1024
    public var maxUnauthenticatedConnections = 64
    /// Passphrase proofs checked per second by the whole service.
    public var authChecksPerSecond = 20
    /// WRITE data received and not yet applied, across all connections.
    public var maxPendingBytes = ConfigSize(text: "256M", bytes: 256 << 20)
    /// Labs only: let regular files be replication targets. Production targets are block devices.
    public var allowFileTargets = false
    /// Ranges of blocks a pair's undo set keeps before it is emptied (docs/JOURNAL.md "The undo set").
    public var undoSetMaxRanges: Int = 65536

    public init() {}

    public init(retentionPath: String) {
        self.retentionPath = retentionPath
    }

    /// What to do when the retention volume runs short (DESIGN §7).
    public enum SpacePolicy: String, Sendable, Equatable, CaseIterable {
        /// Drop the oldest recovery points, with a loud warning.
        case pruneOldest = "prune-oldest"
        /// Stop accepting writes until space is freed.
        case stop
    }

    /// The keys in file order, with the comment written above each.
    static let keys: [(key: String, comment: String)] = [
        ("listen_address", "Address the replication service listens on (IPv4 or IPv6; 0.0.0.0 = every interface)."),
        ("port", "TCP port of the replication service (TLS 1.3)."),
        ("retention_path", "Mount point of the retention volume: undo journal and recovery-point catalog."),
        ("rpo_threshold", "Warn when a group's newest recovery point is older than this (s, m, h, d)."),
        ("retention_window", "Keep recovery points this long."),
        ("app_consistent_frequency", "Expected interval between app-consistent tags; a longer gap is reported."),
        ("space_policy", "When the retention volume runs short: prune-oldest (drop the oldest points, loudly) or stop."),
        ("tls_certificate", "The service's self-signed certificate; senders pin its SHA-256 fingerprint."),
        ("tls_key", "Its private key (mode 0600)."),
        ("passphrase_key", "The key derived from the replication passphrase (mode 0600); never the passphrase."),
        ("metrics_address", "Prometheus endpoint, HOST:PORT (GET /metrics; loopback by default), or off."),
        ("log_level", "How much the service logs: trace, debug, info, notice, warning, error, critical."),
        ("handshake_timeout", "A connection that has not authenticated this long after accept is closed; heartbeats do not extend it."),
        ("max_connections", "Connections open at once; beyond it new ones are closed at accept."),
        ("max_unauthenticated_connections", "Connections open at once that have not authenticated yet; beyond it new ones are closed at accept."),
        ("auth_checks_per_second", "Passphrase proofs checked per second by the whole service, on top of the per-address delays."),
        ("max_pending_bytes", "Data received and not yet applied, all senders together; beyond it the service stops reading (K, M, G)."),
        ("allow_file_targets", "Labs only: let regular files be replication targets (true/false); production targets are disks."),
        ("undo_set_max_ranges", "Per pair, the runs of blocks saved since the last tag that are remembered (16 bytes each); past it the set is emptied, which costs journal space only."),
    ]

    /// The log levels `log_level` accepts, as swift-log names them.
    public static let logLevels = ["trace", "debug", "info", "notice", "warning", "error", "critical"]

    public func value(of key: String) -> String {
        switch key {
        case "listen_address": listenAddress
        case "port": String(port)
        case "retention_path": retentionPath
        case "rpo_threshold": rpoThreshold.text
        case "retention_window": retentionWindow.text
        case "app_consistent_frequency": appConsistentFrequency.text
        case "space_policy": spacePolicy.rawValue
        case "tls_certificate": tlsCertificate
        case "tls_key": tlsKey
        case "passphrase_key": passphraseKey
        case "metrics_address": metricsAddress?.description ?? "off"
        case "log_level": logLevel
        case "handshake_timeout": handshakeTimeout.text
        case "max_connections": String(maxConnections)
        case "max_unauthenticated_connections": String(maxUnauthenticatedConnections)
        case "auth_checks_per_second": String(authChecksPerSecond)
        case "max_pending_bytes": maxPendingBytes.text
        case "allow_file_targets": String(allowFileTargets)
        case "undo_set_max_ranges": String(undoSetMaxRanges)
        default: ""
        }
    }

    /// The documented file setup writes.
    public func render() -> String {
        var out = """
            # mt-agent configuration, written by `mt-agent setup`. Edit freely: setup never
            # overwrites this file once it exists. Format: `key = value`; `#` starts a comment;
            # a key left out keeps its default. `systemctl reload mt-agent` applies rpo_threshold,
            # retention_window, app_consistent_frequency, space_policy and log_level; other keys need a restart.

            """
        for (key, comment) in Self.keys {
            out += "\n# \(comment)\n\(key) = \(value(of: key))\n"
        }
        return out
    }

    /// One `key = value` line of the file.
    struct Line {
        var key: String
        var value: String
        var number: Int
    }

    /// The file's settings, checked for form only: `key = value`, known keys, each set once.
    static func lines(_ text: String, path: String) throws -> [Line] {
        var out: [Line] = []
        for (index, raw) in text.split(separator: "\n", omittingEmptySubsequences: false).enumerated() {
            let line = String(raw).trimmingWhitespace()
            if line.isEmpty || line.hasPrefix("#") { continue }
            let number = index + 1
            func fail(_ key: String?, _ problem: String) -> AgentConfigError {
                AgentConfigError(path: path, line: number, key: key, problem: problem)
            }
            guard let eq = line.firstIndex(of: "=") else {
                throw fail(nil, "expected `key = value`, found \"\(line)\"")
            }
            let key = String(line[..<eq]).trimmingWhitespace()
            let value = String(line[line.index(after: eq)...]).trimmingWhitespace()
            if let problem = unknownKey(key) { throw fail(key, problem) }
            guard !out.contains(where: { $0.key == key }) else { throw fail(key, "set twice") }
            out.append(Line(key: key, value: value, number: number))
        }
        return out
    }

    /// Nil for a key the file may set.
    static func unknownKey(_ key: String) -> String? {
        keys.contains(where: { $0.key == key }) ? nil : "unknown key (known: \(keys.map(\.key).joined(separator: ", ")))"
    }

    /// Parses the file; `path` only names the file in errors.
    public static func parse(_ text: String, path: String = AgentPaths.config) throws -> AgentConfig {
        var config = AgentConfig()
        for line in try lines(text, path: path) {
            if let problem = config.set(line.key, line.value) {
                throw AgentConfigError(path: path, line: line.number, key: line.key, problem: problem)
            }
        }
        return config
    }

    /// Sets a known key from its text; returns the problem when the text is not a valid value.
    mutating func set(_ key: String, _ value: String) -> String? {
        guard !value.isEmpty else { return "no value" }
        switch key {
        case "listen_address":
            guard Self.isIPAddress(value) else { return "\"\(value)\" is not an IPv4 or IPv6 address" }
            listenAddress = value
        case "port":
            guard let port = Int(value), (1...65535).contains(port) else {
                return "\"\(value)\" is not a TCP port (1–65535)"
            }
            self.port = port
        case "rpo_threshold", "retention_window", "app_consistent_frequency", "handshake_timeout":
            guard let duration = ConfigDuration(value), duration.seconds > 0 else {
                return "\"\(value)\" is not a duration (e.g. 30s, 15m, 24h, 7d)"
            }
            switch key {
            case "rpo_threshold": rpoThreshold = duration
            case "retention_window": retentionWindow = duration
            case "handshake_timeout":
                guard duration.seconds <= 3600 else { return "\"\(value)\" is longer than 1h: unauthenticated peers would be held that long" }
                handshakeTimeout = duration
            default: appConsistentFrequency = duration
            }
        case "max_connections", "max_unauthenticated_connections", "auth_checks_per_second":
            let range = key == "auth_checks_per_second" ? 1...10_000 : 1...1_000_000
            guard let n = Int(value), range.contains(n) else {
                return "\"\(value)\" is not a whole number from \(range.lowerBound) to \(range.upperBound)"
            }
            switch key {
            case "max_connections": maxConnections = n
            case "max_unauthenticated_connections": maxUnauthenticatedConnections = n
            default: authChecksPerSecond = n
            }
        case "max_pending_bytes":
            guard let size = ConfigSize(value), size.bytes >= 1 << 20 else {
                return "\"\(value)\" is not a size of at least 1M (e.g. 256M, 1G)"
            }
            maxPendingBytes = size
        case "metrics_address":
            if value == "off" {
                metricsAddress = nil
            } else {
                guard let address = HostPort(value) else {
                    return "\"\(value)\" is not HOST:PORT (e.g. 127.0.0.1:9464, [::1]:9464) or off"
                }
                metricsAddress = address
            }
        case "log_level":
            guard Self.logLevels.contains(value) else {
                return "\"\(value)\" is not one of \(Self.logLevels.joined(separator: ", "))"
            }
            logLevel = value
        case "allow_file_targets":
            guard let allow = Bool(value) else { return "\"\(value)\" is not true or false" }
            allowFileTargets = allow
        case "undo_set_max_ranges":
            guard let ranges = Int(value), (1...(1 << 24)).contains(ranges) else {
                return "\"\(value)\" is not a number of ranges from 1 to 16777216"
            }
            undoSetMaxRanges = ranges
        case "space_policy":
            guard let policy = SpacePolicy(rawValue: value) else {
                return "\"\(value)\" is not one of \(SpacePolicy.allCases.map(\.rawValue).joined(separator: ", "))"
            }
            spacePolicy = policy
        default:  // paths
            guard value.hasPrefix("/") else { return "\"\(value)\" is not an absolute path" }
            switch key {
            case "retention_path": retentionPath = value
            case "tls_certificate": tlsCertificate = value
            case "tls_key": tlsKey = value
            default: passphraseKey = value
            }
        }
        return nil
    }

    static func isIPAddress(_ s: String) -> Bool {
        var v4 = in_addr()
        var v6 = in6_addr()
        return inet_pton(AF_INET, s, &v4) == 1 || inet_pton(AF_INET6, s, &v6) == 1
    }
}

/// An IP address and TCP port: `127.0.0.1:9464`, `[::1]:9464`.
public struct HostPort: Sendable, Equatable, CustomStringConvertible {
    public var host: String
    public var port: Int

    public init(host: String, port: Int) {
        self.host = host
        self.port = port
    }

    public init?(_ text: String) {
        guard let colon = text.lastIndex(of: ":") else { return nil }
        var host = String(text[..<colon])
        if host.hasPrefix("[") && host.hasSuffix("]") { host = String(host.dropFirst().dropLast()) }
        guard let port = Int(text[text.index(after: colon)...]), (1...65535).contains(port),
              AgentConfig.isIPAddress(host), !host.contains(":") || text.hasPrefix("[")
        else { return nil }
        self.host = host
        self.port = port
    }

    public var description: String { host.contains(":") ? "[\(host)]:\(port)" : "\(host):\(port)" }
}

/// A duration as the admin wrote it (`15m`), with its length; equal when the lengths are.
public struct ConfigDuration: Sendable, Equatable, CustomStringConvertible {
    public var text: String
    public var seconds: Int

    init(text: String, seconds: Int) {
        self.text = text
        self.seconds = seconds
    }

    /// `30s`, `15m`, `24h`, `7d`, or a bare number of seconds.
    public init?(_ text: String) {
        guard let seconds = scaledCount(text, units: ["s": 1, "m": 60, "h": 3600, "d": 86400]) else { return nil }
        self.text = text
        self.seconds = seconds
    }

    public static func == (a: ConfigDuration, b: ConfigDuration) -> Bool { a.seconds == b.seconds }
    public var description: String { text }
}

/// A size as the admin wrote it (`256M`), with its bytes; equal when the byte counts are.
public struct ConfigSize: Sendable, Equatable, CustomStringConvertible {
    public var text: String
    public var bytes: Int

    init(text: String, bytes: Int) {
        self.text = text
        self.bytes = bytes
    }

    /// `512K`, `256M`, `1G` (binary: 1K = 1024), or a bare number of bytes.
    public init?(_ text: String) {
        guard let bytes = scaledCount(text, units: ["K": 1 << 10, "M": 1 << 20, "G": 1 << 30]) else { return nil }
        self.text = text
        self.bytes = bytes
    }

    public static func == (a: ConfigSize, b: ConfigSize) -> Bool { a.bytes == b.bytes }
    public var description: String { text }
}

/// ASCII digits with an optional one-letter unit suffix from `units` (a bare number has unit 1), as
/// a count of the unit's base; nil for anything else or a value past `Int.max`.
private func scaledCount(_ text: String, units: [Character: Int]) -> Int? {
    guard let last = text.last else { return nil }
    var digits = Substring(text)
    var unit = 1
    if let u = units[last] {
        unit = u
        digits = digits.dropLast()
    }
    guard !digits.isEmpty, digits.allSatisfy(\.isASCII), digits.allSatisfy(\.isNumber),
          let n = Int(digits), n <= Int.max / unit
    else { return nil }
    return n * unit
}

/// A config problem as one line: `/etc/mt-agent/mt-agent.conf line 4: port: "99999" is not a TCP port (1–65535)`.
public struct AgentConfigError: Error, Equatable, CustomStringConvertible {
    public var path: String
    public var line: Int?
    public var key: String?
    public var problem: String

    public var description: String {
        let location = line.map { "\(path) line \($0)" } ?? path
        return "\(location): " + (key.map { "\($0): " } ?? "") + problem
    }
}
