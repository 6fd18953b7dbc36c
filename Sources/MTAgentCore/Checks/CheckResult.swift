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
        @Nullable public var hctl: String? = nil
        @Nullable public var wwid: String? = nil
        @Nullable public var detail: String? = nil

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
    @Nullable public var fix: String? = nil
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
