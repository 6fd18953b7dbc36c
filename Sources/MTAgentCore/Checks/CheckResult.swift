/// The result of one check, in the shape every `check` and `preflight` command prints.
public struct CheckResult: Codable, Sendable, Equatable {
    public enum Status: String, Codable, Sendable, Comparable {
        case pass, warn, fail, skip

        private var severity: Int {
            switch self {
            case .skip: 0
            case .pass: 1
            case .warn: 2
            case .fail: 3
            }
        }
        public static func < (a: Status, b: Status) -> Bool { a.severity < b.severity }
    }

    /// A disk the status is about.
    public struct Subject: Codable, Sendable, Equatable {
        public var name: String
        public var hctl: String?
        public var wwid: String?
        public var detail: String?

        public init(name: String, hctl: String?, wwid: String? = nil, detail: String? = nil) {
            self.name = name
            self.hctl = hctl
            self.wwid = wwid
            self.detail = detail
        }

        public init(_ disk: Disk, detail: String? = nil) {
            self.init(name: disk.name, hctl: disk.hctl, wwid: disk.wwid, detail: detail)
        }
    }

    public var id: String
    public var status: Status
    public var message: String
    public var fix: String?
    public var subjects: [Subject]

    public init(id: String, status: Status, message: String, fix: String? = nil, subjects: [Subject] = []) {
        self.id = id
        self.status = status
        self.message = message
        self.fix = fix
        self.subjects = subjects
    }
}

public struct CheckReport: Codable, Sendable, Equatable {
    public var checks: [CheckResult]
    public init(checks: [CheckResult]) { self.checks = checks }

    /// 1 when any check failed, else 0 (warnings do not fail a run).
    public var exitCode: Int32 { checks.contains { $0.status == .fail } ? 1 : 0 }
}

extension CheckResult {
    /// Encodes absent values as `null`: the JSON contract lists every field.
    public func encode(to encoder: any Encoder) throws {
        var c = encoder.container(keyedBy: CodingKeys.self)
        try c.encode(id, forKey: .id)
        try c.encode(status, forKey: .status)
        try c.encode(message, forKey: .message)
        try c.encode(fix, forKey: .fix)
        try c.encode(subjects, forKey: .subjects)
    }
}

extension CheckResult.Subject {
    public func encode(to encoder: any Encoder) throws {
        var c = encoder.container(keyedBy: CodingKeys.self)
        try c.encode(name, forKey: .name)
        try c.encode(hctl, forKey: .hctl)
        try c.encode(wwid, forKey: .wwid)
        try c.encode(detail, forKey: .detail)
    }
}
