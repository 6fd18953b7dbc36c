import Logging
import MTAgentCore
import MTAgentLinux

/// One change `mt-agent setup` makes to the machine. Steps are idempotent: `check` says whether
/// the machine already has what the step would do, `apply` does it, `revert` undoes it. Every
/// file a step writes goes through `SetupContext.files`, which backs the original up first, so
/// the engine can restore it byte for byte on `--revert` whatever the step did.
public protocol SetupStep: Sendable {
    /// Stable id used in the state file, logs and `--json` (e.g. `multipath.conf`).
    var id: String { get }
    /// One line for the plan (e.g. "Configure multipath: user_friendly_names no, …").
    var title: String { get }

    func check(_ context: SetupContext) throws -> StepState
    /// Makes the change. Only called when `check` returned `.needed`.
    func apply(_ context: SetupContext) throws -> StepOutcome
    /// Undoes what `apply` did beyond file contents (the engine restores files itself), e.g.
    /// `systemctl disable`. Most steps have nothing to do here.
    func revert(_ context: SetupContext) throws
    /// Runs after `--revert` has restored every file setup changed, in reverse step order: for
    /// effects derived from those files (an initramfs rebuilt from the restored configs).
    func afterRevert(_ context: SetupContext) throws
    /// Why this step's change needs a reboot, when it always does. The engine records it for a
    /// step that a killed run had already applied but whose outcome it never recorded (the
    /// re-run finds the step done and does not call `apply` again). Nil: no reboot.
    var rebootReason: String? { get }
}

extension SetupStep {
    public func revert(_ context: SetupContext) throws {}
    public func afterRevert(_ context: SetupContext) throws {}
    public var rebootReason: String? { nil }
}

/// Where a step stands on this machine.
public enum StepState: Sendable, Equatable, Codable {
    /// Already as setup wants it.
    case done
    /// Would change something; the text says what (shown in the plan).
    case needed(String)
    /// Does not apply here (e.g. systemd is not PID 1); the text says why and what to do instead.
    case notApplicable(String)
    /// Cannot be applied until the admin acts; the text says what to do. Setup stops before it.
    case blocked(String)
}

/// What applying a step did, for the summary.
public struct StepOutcome: Sendable, Equatable, Codable {
    public var summary: String
    /// Why a reboot is needed for this change to take effect, if it is.
    public var rebootReason: String?
    /// Lines to print for the admin (e.g. the TLS fingerprint).
    public var notes: [String]

    public init(summary: String, rebootReason: String? = nil, notes: [String] = []) {
        self.summary = summary
        self.rebootReason = rebootReason
        self.notes = notes
    }
}

/// Options from the command line that steps read.
public struct SetupOptions: Sendable, Equatable {
    public var retentionPath: String = "/mnt/retention"
    /// `--format ext4|xfs`: format the retention device if it holds nothing.
    public var format: String?
    /// `--force-format DEVICE`: the device the admin allows to be formatted although it holds a filesystem.
    public var forceFormatDevice: String?
    /// The retention device to prepare (`--retention-device`), if setup should format/mount one.
    public var retentionDevice: String?
    public var passphraseFile: String?
    public var installPackages: Bool = false
    /// The `mt-agent` the service unit runs (`ExecStart`). Setup on the live machine passes the
    /// running binary's path; the default is where the packages install it.
    public var executablePath: String = "/usr/bin/mt-agent"

    public init() {}
}

/// Reads and writes of the machine's files during setup, under the system root.
public protocol SetupFileSystem: Sendable {
    /// The directory that stands for `/`.
    var root: String { get }
    func read(_ path: String) -> [UInt8]?
    func exists(_ path: String) -> Bool
    /// Replaces `path` (absolute on the machine) atomically: temp file, fsync, rename, fsync of the
    /// directory. Creates missing parent directories (mode 0755). The original is backed up first.
    func write(_ path: String, _ bytes: [UInt8], mode: UInt32) throws
    /// Removes `path` after backing it up; removing what does not exist is not an error.
    func remove(_ path: String) throws
}

/// Everything a step may use; side effects only through these.
public struct SetupContext: Sendable {
    public var files: SetupFileSystem
    /// Read-only view for discovery and parsing (`/proc`, `/sys`).
    public var system: SystemFiles
    public var runner: CommandRunning
    public var inventory: Inventory
    public var options: SetupOptions
    public var logger: Logger
    /// True when systemd is PID 1 (live: /proc/1/comm is `systemd`); steps that talk to systemd
    /// print what to run instead when it is not.
    public var systemdRunning: Bool

    public init(
        files: SetupFileSystem, system: SystemFiles, runner: CommandRunning, inventory: Inventory,
        options: SetupOptions, logger: Logger, systemdRunning: Bool
    ) {
        self.files = files
        self.system = system
        self.runner = runner
        self.inventory = inventory
        self.options = options
        self.logger = logger
        self.systemdRunning = systemdRunning
    }

    public var root: String { files.root }
}

extension SetupContext {
    /// The state of a file setup owns whole (a unit, a drop-in, a rules file): done when it holds
    /// exactly `content`, otherwise needed with `installing` (absent) or a replace note.
    ///
    /// `packaged` is where the packages install the same file under /usr/lib, which a file at
    /// `path` in /etc would override by name. When it holds exactly `content` and `path` is
    /// absent, the package's copy is in charge and setup adds none: an /etc copy would hide the
    /// next package upgrade's version of the file.
    func ownedFileState(_ path: String, content: [UInt8], installing: String, what: String, packaged: String? = nil) throws -> StepState {
        guard let existing = files.read(path) else {
            if files.exists(path) { throw SetupError.unreadable(path: path) }
            if let packaged, files.read(packaged) == content { return .done }
            return .needed(installing)
        }
        return existing == content ? .done : .needed("replace \(path) (it differs from this version's\(what))")
    }
}
