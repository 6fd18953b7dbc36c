import MTAgentCore
import MTAgentLinux

/// The fields of `/etc/os-release` that decide support and the package manager.
public struct OSRelease: Sendable, Equatable, Codable {
    /// `ID`, lowercased (`rhel`, `centos`, `rocky`, `almalinux`, `ubuntu`, `debian`, `sles`…).
    public var id: String
    /// `VERSION_ID` (`7`, `8.9`, `22.04`, `12`); empty when the file has none (Debian testing).
    public var versionID: String
    /// `ID_LIKE`, split on spaces and lowercased.
    public var idLike: [String]
    /// `PRETTY_NAME`, for messages; falls back to `ID VERSION_ID`.
    public var prettyName: String

    public init(id: String, versionID: String, idLike: [String] = [], prettyName: String? = nil) {
        self.id = id.lowercased()
        self.versionID = versionID
        self.idLike = idLike.map { $0.lowercased() }
        self.prettyName = prettyName ?? (versionID.isEmpty ? id : "\(id) \(versionID)")
    }

    /// Parses the shell-like `KEY=value` format of os-release(5): values may be double- or
    /// single-quoted, with backslash escapes inside double quotes; other lines are ignored.
    /// Nil when there is no `ID`.
    public static func parse(_ text: String) -> OSRelease? {
        var fields: [String: String] = [:]
        for raw in text.split(whereSeparator: \.isNewline) {
            let line = String(raw).trimmingWhitespace()
            guard !line.hasPrefix("#"), let eq = line.firstIndex(of: "=") else { continue }
            let key = String(line[..<eq])
            fields[key] = unquote(line[line.index(after: eq)...])
        }
        guard let id = fields["ID"], !id.isEmpty else { return nil }
        return OSRelease(
            id: id,
            versionID: fields["VERSION_ID"] ?? "",
            idLike: (fields["ID_LIKE"] ?? "").split(separator: " ").map(String.init),
            prettyName: fields["PRETTY_NAME"].flatMap { $0.isEmpty ? nil : $0 }
        )
    }

    /// Reads `/etc/os-release`, or `/usr/lib/os-release` as os-release(5) allows.
    public static func read(from system: SystemFiles) -> OSRelease? {
        for path in ["/etc/os-release", "/usr/lib/os-release"] {
            if let bytes = system.read(path), let release = parse(String(decoding: bytes, as: UTF8.self)) {
                return release
            }
        }
        return nil
    }

    /// The numeric parts of `VERSION_ID` (`22.04` → [22, 4]); empty when it does not start with a number.
    var versionNumbers: [Int] {
        var numbers: [Int] = []
        for part in versionID.split(separator: ".") {
            guard let n = Int(part) else { break }
            numbers.append(n)
        }
        return numbers
    }

    private static func unquote(_ value: Substring) -> String {
        let v = String(value).trimmingWhitespace()
        if v.count >= 2, v.first == "'", v.last == "'" { return String(v.dropFirst().dropLast()) }
        return BraceConfig.unquote(v)
    }
}

/// The distribution families mt-agent is built and tested for.
public enum OSFamily: String, Sendable, Equatable, Codable {
    /// RHEL and its rebuilds: CentOS, Rocky, AlmaLinux.
    case rhel
    case ubuntu
    case debian
}

/// What mt-agent makes of this machine's OS and kernel.
public struct OSSupport: Sendable, Equatable, Codable {
    public var release: OSRelease?
    /// `/proc/sys/kernel/osrelease` (e.g. `4.18.0-513.el8.x86_64`); nil when it cannot be read.
    public var kernel: String?
    /// The family when the distribution and version are supported.
    public var family: OSFamily?
    /// The major version (`8`, `22`, `12`) of a recognised distribution.
    public var majorVersion: Int?
    /// Why the machine is not supported; nil when it is.
    public var problem: String?

    public var isSupported: Bool { problem == nil }

    /// The supported matrix, for messages and docs.
    public static let supportedList = "RHEL/CentOS/Rocky/AlmaLinux 7–9, Ubuntu 20.04 or later, Debian 11 or later"
    /// The oldest kernel of a supported distribution (RHEL 7's 3.10): device-mapper, multipath
    /// and the SCSI sysfs attributes mt-agent reads are all there.
    public static let minimumKernel = [3, 10]

    /// Decides support from os-release and the kernel release; pure, so preflight can reuse it.
    public static func evaluate(release: OSRelease?, kernel: String?) -> OSSupport {
        var result = OSSupport(release: release, kernel: kernel)
        guard let release else {
            result.problem = "cannot read /etc/os-release; supported: \(supportedList)"
            return result
        }
        let numbers = release.versionNumbers
        let major = numbers.first
        result.majorVersion = major
        let name = release.prettyName
        switch release.id {
        case "rhel", "centos", "rocky", "almalinux":
            if let major, (7...9).contains(major) {
                result.family = .rhel
            } else {
                result.problem = "\(name) is not a supported version; supported: \(supportedList)"
            }
        case "ubuntu":
            let minor = numbers.count > 1 ? numbers[1] : 0
            if let major, major > 20 || (major == 20 && minor >= 4) {
                result.family = .ubuntu
            } else {
                result.problem = "\(name) is older than Ubuntu 20.04; supported: \(supportedList)"
            }
        case "debian":
            if let major, major >= 11 {
                result.family = .debian
            } else if major == nil {
                result.problem = "\(name) has no VERSION_ID (testing/unstable?); supported: \(supportedList)"
            } else {
                result.problem = "\(name) is older than Debian 11; supported: \(supportedList)"
            }
        default:
            result.problem = "\(name) is not a supported distribution; supported: \(supportedList)"
        }
        if result.problem == nil, let kernel, !kernelAtLeast(kernel, minimumKernel) {
            result.problem = "kernel \(kernel) is older than 3.10"
        }
        return result
    }

    /// Reads os-release and the kernel release through `system` and evaluates them.
    public static func read(from system: SystemFiles) -> OSSupport {
        evaluate(release: OSRelease.read(from: system), kernel: system.text("/proc/sys/kernel/osrelease"))
    }

    /// One line: "Rocky Linux 9.3, kernel 5.14.0-362.el9.x86_64".
    public var summary: String {
        let os = release?.prettyName ?? "unknown OS"
        return "\(os), kernel \(kernel ?? "unknown")"
    }

    static func kernelAtLeast(_ kernel: String, _ minimum: [Int]) -> Bool {
        // "4.18.0-513.el8.x86_64" → [4, 18, 0]
        let head = kernel.prefix { $0.isNumber || $0 == "." }
        let parts = head.split(separator: ".").compactMap { Int($0) }
        guard !parts.isEmpty else { return true }  // unparsable: do not block on it
        for (a, b) in zip(parts + [0, 0], minimum) where a != b {
            return a > b
        }
        return true
    }
}
