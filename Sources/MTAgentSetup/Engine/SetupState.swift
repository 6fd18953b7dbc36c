import FoundationEssentials
import Glibc
import MTAgentCore
import MTAgentLinux

/// Where setup keeps its own files, as absolute paths on the machine (under `--root`).
public enum SetupPaths {
    public static let directory = "/var/lib/mt-agent/setup"
    public static let state = "/var/lib/mt-agent/setup/state.json"
    public static let backups = "/var/lib/mt-agent/setup/backup"
    public static let lock = "/var/lib/mt-agent/setup/lock"
    public static let log = "/var/log/mt-agent/setup.log"
    /// Changes with every boot; tells whether the reboot setup asked for has happened.
    public static let bootID = "/proc/sys/kernel/random/boot_id"
}

/// `state.json`: what setup changed on this machine and how to undo it. Rewritten atomically
/// after every step and before every file change, so a killed run leaves it describing every
/// change already on disk. It holds no timestamps (the log does), so an interrupted run and
/// its re-run leave the same state as one uninterrupted run.
public struct SetupState: Codable, Equatable, Sendable {
    public var version = 1
    /// Steps setup applied, in the order applied.
    public var steps: [StepRecord] = []
    /// Every path setup changed, in the order first changed, with what was there before.
    public var backups: [BackupEntry] = []
    /// Why a reboot is needed, per step; cleared by the first run after the reboot.
    public var reboot: [RebootReason] = []
    /// The boot the reboot reasons were recorded in (`/proc/sys/kernel/random/boot_id`).
    @Nullable public var bootID: String? = nil

    public init() {}

    public struct StepRecord: Codable, Equatable, Sendable {
        public enum Status: String, Codable, Sendable {
            /// `apply` was called and has not returned yet (or the run died inside it).
            case applying
            case applied
        }
        public var id: String
        public var status: Status
        @Nullable public var outcome: StepOutcome? = nil
    }

    public struct RebootReason: Codable, Equatable, Sendable {
        public var step: String
        public var reason: String
    }

    /// The reasons that still stand: those recorded in this boot (or anywhere the boot is unknown,
    /// as in a `--root` tree).
    public func pendingReboot(currentBootID: String?) -> [RebootReason] {
        guard let bootID, let currentBootID else { return reboot }
        return bootID == currentBootID ? reboot : []
    }

    func record(_ id: String) -> StepRecord? { steps.first { $0.id == id } }

    mutating func setRecord(_ record: StepRecord) {
        if let i = steps.firstIndex(where: { $0.id == record.id }) {
            steps[i] = record
        } else {
            steps.append(record)
        }
    }
}

/// One path setup changed and what was there before it.
public struct BackupEntry: Codable, Equatable, Sendable {
    public enum Kind: String, Codable, Sendable {
        /// A file existed; its bytes, mode, owner and mtime are saved under `backup/files/<path>`.
        case file
        /// Nothing existed: revert removes the file.
        case absent
        /// Setup created this directory: revert removes it when empty.
        case directory
    }
    public var path: String
    public var kind: Kind
    /// The step that changed it first.
    @Nullable public var step: String? = nil
    @Nullable public var mode: UInt32? = nil
    @Nullable public var uid: UInt32? = nil
    @Nullable public var gid: UInt32? = nil
    @Nullable public var mtimeSeconds: Int? = nil
    @Nullable public var mtimeNanoseconds: Int? = nil

    /// Where the original's bytes are kept, relative to the backup directory.
    public var copy: String? { kind == .file ? "files" + path : nil }
}

/// Loads and saves `state.json` under the root; shared by the engine (steps) and the file layer
/// (backups), so each change is recorded before it is made.
final class SetupStateStore: @unchecked Sendable {
    let root: String
    private let lock = Lock()
    private var current: SetupState
    private(set) var existed: Bool

    init(root: String) throws {
        self.root = root
        let path = Self.host(root, SetupPaths.state)
        if HostFile.exists(path) {
            let bytes = try HostFile.read(path)
            do {
                current = try JSONDecoder().decode(SetupState.self, from: Data(bytes))
            } catch {
                throw SetupError.corruptState(path: path, reason: "\(error)")
            }
            existed = true
        } else {
            current = SetupState()
            existed = false
        }
    }

    var state: SetupState { lock.withLock { current } }

    func host(_ path: String) -> String { Self.host(root, path) }

    static func host(_ root: String, _ path: String) -> String {
        root == "/" ? path : root + path
    }

    /// Changes the state and writes it durably before returning.
    func update(_ change: (inout SetupState) -> Void) throws {
        try lock.withLock {
            var next = current
            change(&next)
            try save(next)
            current = next
            existed = true
        }
    }

    private func save(_ state: SetupState) throws {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.prettyPrinted, .sortedKeys, .withoutEscapingSlashes]
        var bytes = Array(try encoder.encode(state))
        bytes.append(0x0A)
        let path = host(SetupPaths.state)
        try HostFile.makeDirectories(HostFile.dirname(path), mode: 0o700)
        try HostFile.write(path, bytes, mode: 0o600)
    }

    /// Forgets everything: after a complete revert.
    func clear() throws {
        try lock.withLock {
            let backups = host(SetupPaths.backups)
            try HostFile.removeTree(backups)
            try HostFile.remove(host(SetupPaths.state))
            try HostFile.remove(host(SetupPaths.lock))
            HostFile.removeDirectoryIfEmpty(host(SetupPaths.directory))
            HostFile.removeDirectoryIfEmpty(host(HostFile.dirname(SetupPaths.directory)))
            current = SetupState()
            existed = false
        }
    }
}

