import MTAgentCore

/// What a setup run found and did: the `--json` document, and what the text output is
/// rendered from.
public struct SetupReport: Codable, Sendable, Equatable {
    public enum Mode: String, Codable, Sendable {
        /// Checks only (`--dry-run`, or the plan printed before asking).
        case plan
        case apply
        case revert
    }

    public enum Result: String, Codable, Sendable {
        /// A plan with changes to make (nothing was changed).
        case planned
        /// Every step is done or does not apply; nothing was changed.
        case nothingToDo = "nothing-to-do"
        /// Every needed step was applied and verified.
        case applied
        /// A step is blocked until the admin acts; the steps before it were applied.
        case stopped
        /// A check or step failed, or verification found a step not done.
        case failed
        case reverted
        case nothingToRevert = "nothing-to-revert"
    }

    /// `/` or the `--root` directory.
    public var root: String
    public var mode: Mode
    public var result: Result
    /// The one line that says why a run stopped or failed.
    @Nullable public var message: String? = nil
    public var steps: [StepReport]
    /// Files `--revert` restores (`file`) or removes (`absent`), in the order it does so.
    public var files: [BackupEntry]
    public var rebootRequired: Bool
    /// "multipath: …", one per step whose change needs a reboot.
    public var rebootReasons: [String]
    /// Lines for the admin from the steps (e.g. the TLS fingerprint).
    public var notes: [String]
    /// The setup log, when this run wrote to it.
    @Nullable public var log: String? = nil

    public init(
        root: String, mode: Mode, result: Result, message: String? = nil, steps: [StepReport], files: [BackupEntry] = [],
        rebootRequired: Bool = false, rebootReasons: [String] = [], notes: [String] = [], log: String? = nil
    ) {
        self.root = root
        self.mode = mode
        self.result = result
        self.message = message
        self.steps = steps
        self.files = files
        self.rebootRequired = rebootRequired
        self.rebootReasons = rebootReasons
        self.notes = notes
        self.log = log
    }

    /// 0: done (or nothing to do, or a plan); 1: stopped at a blocked step, which the admin must
    /// act on; 2: a check, a step or verification failed.
    public var exitCode: Int32 {
        switch result {
        case .planned, .nothingToDo, .applied, .reverted, .nothingToRevert: 0
        case .stopped: 1
        case .failed: 2
        }
    }
}

/// One step in a report: where it stood when checked, and what this run did with it.
public struct StepReport: Codable, Sendable, Equatable {
    public enum State: String, Codable, Sendable {
        case done, needed
        case notApplicable = "not-applicable"
        case blocked
        /// Its check failed (e.g. a config file that does not parse).
        case error
    }

    public enum Action: String, Codable, Sendable {
        case applied
        /// A killed run had made the change; this run found it done and recorded it.
        case completed
        case failed
        /// After a blocked step or a failure: not attempted.
        case notReached = "not-reached"
        case reverted
    }

    public var id: String
    public var title: String
    public var state: State
    /// What `needed` would change, why `blocked`/`not-applicable`, or the error.
    @Nullable public var detail: String? = nil
    @Nullable public var action: Action? = nil
    /// What applying did.
    @Nullable public var summary: String? = nil

    public init(id: String, title: String, state: State, detail: String? = nil) {
        self.id = id
        self.title = title
        self.state = state
        self.detail = detail
    }

    init(_ step: SetupStep, _ state: StepState) {
        switch state {
        case .done: self.init(id: step.id, title: step.title, state: .done)
        case .needed(let what): self.init(id: step.id, title: step.title, state: .needed, detail: what)
        case .notApplicable(let why): self.init(id: step.id, title: step.title, state: .notApplicable, detail: why)
        case .blocked(let why): self.init(id: step.id, title: step.title, state: .blocked, detail: why)
        }
    }
}

/// Why setup could not do its job (as opposed to a step that is blocked, which is a result).
public enum SetupError: Error, CustomStringConvertible, Equatable {
    case corruptState(path: String, reason: String)
    case notAFile(path: String, kind: String)
    case badPath(String)
    case missingBackup(path: String, copy: String)
    case busy(lock: String)
    /// A config file setup must merge into does not parse; nothing is changed.
    case unparsable(path: String, line: Int, reason: String)
    case unreadable(path: String)

    public var description: String {
        switch self {
        case .corruptState(let path, let reason):
            "the setup state file \(path) cannot be read (\(reason)); move it away to start over (the backups under its directory stay)"
        case .notAFile(let path, let kind):
            "\(path) is a \(kind), not a file; setup replaces only regular files — move it away and run setup again"
        case .badPath(let path):
            "setup cannot write \(path): not an absolute path of the machine, or one of setup's own files"
        case .missingBackup(let path, let copy):
            "cannot restore \(path): its backup \(copy) is missing"
        case .busy(let lock):
            "another mt-agent setup is running (it holds \(lock)); wait for it to finish"
        case .unparsable(let path, let line, let reason):
            "cannot parse \(path) line \(line): \(reason); fix the file and run setup again (nothing was changed)"
        case .unreadable(let path):
            "cannot read \(path); fix its permissions and run setup again (nothing was changed)"
        }
    }
}
