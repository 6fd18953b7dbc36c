import Glibc
import Logging
import MTAgentLinux

/// The machine's files under `--root`, as setup changes them. Before a path is changed for the
/// first time (in this run or any earlier one not yet reverted) its original — bytes, mode,
/// owner, mtime — is copied under `var/lib/mt-agent/setup/backup/files/` and recorded in the
/// state file, or its absence is recorded; only then is it replaced, atomically. Writing the
/// bytes a file already has changes nothing (not even its mtime).
public final class RootedSetupFiles: SetupFileSystem, @unchecked Sendable {
    public let root: String
    let store: SetupStateStore
    let failpoint: Failpoint
    private let lock = Lock()
    private var _logger: Logger
    private var _step: String?

    init(root: String, store: SetupStateStore, failpoint: Failpoint, logger: Logger) {
        self.root = root
        self.store = store
        self.failpoint = failpoint
        self._logger = logger
    }

    /// The logger (with the current step's metadata) and step that changes are attributed to.
    func attribute(to step: String?, logger: Logger) {
        lock.withLock {
            _step = step
            _logger = logger
        }
    }

    private var logger: Logger { lock.withLock { _logger } }
    private var step: String? { lock.withLock { _step } }

    public func host(_ path: String) -> String { root == "/" ? path : root + path }

    public func read(_ path: String) -> [UInt8]? {
        try? HostFile.read(host(path))
    }

    public func exists(_ path: String) -> Bool {
        HostFile.exists(host(path))
    }

    public func write(_ path: String, _ bytes: [UInt8], mode: UInt32) throws {
        let path = try checked(path)
        let target = host(path)
        let before = HostFile.info(target)
        if let before {
            guard before.kind == .file else { throw SetupError.notAFile(path: path, kind: "\(before.kind)") }
            if before.mode == mode, (try? HostFile.read(target)) == bytes { return }
        }
        try backUp(path)
        for dir in HostFile.missingParents(of: target) {
            let machinePath = root == "/" ? dir : String(dir.dropFirst(root.count))
            try record(BackupEntry(path: machinePath, kind: .directory, step: step))
            try HostFile.makeDirectory(dir)
            logger.info("created directory", metadata: ["file": "\(machinePath)"])
        }
        try HostFile.write(
            target, bytes, mode: mode, owner: before.map { ($0.uid, $0.gid) },
            checkpoint: { try self.failpoint.hit("\($0):\(path)") })
        logger.info(
            before == nil ? "created file" : "replaced file",
            metadata: ["file": "\(path)", "file.bytes": "\(bytes.count)", "file.mode": "\(String(mode, radix: 8))"])
    }

    public func remove(_ path: String) throws {
        let path = try checked(path)
        guard let before = HostFile.info(host(path)) else { return }
        guard before.kind == .file || before.kind == .symlink else { throw SetupError.notAFile(path: path, kind: "\(before.kind)") }
        try backUp(path)
        try HostFile.remove(host(path))
        logger.info("removed file", metadata: ["file": "\(path)"])
    }

    /// Saves what is at `path` now, unless an earlier change already did.
    private func backUp(_ path: String) throws {
        if store.state.backups.contains(where: { $0.path == path }) { return }
        let target = host(path)
        guard let info = HostFile.info(target) else {
            try record(BackupEntry(path: path, kind: .absent, step: step))
            try failpoint.hit("backup:\(path)")
            return
        }
        let entry = BackupEntry(
            path: path, kind: .file, step: step, mode: info.mode, uid: info.uid, gid: info.gid,
            mtimeSeconds: info.mtime.tv_sec, mtimeNanoseconds: info.mtime.tv_nsec)
        let copy = host(SetupPaths.backups + "/" + entry.copy!)
        try HostFile.makeDirectories(HostFile.dirname(copy), mode: 0o700)
        try HostFile.write(copy, try HostFile.read(target), mode: info.mode, owner: (info.uid, info.gid), mtime: info.mtime)
        try record(entry)
        logger.info("backed up", metadata: ["file": "\(path)", "backup": "\(SetupPaths.backups)/\(entry.copy!)"])
        try failpoint.hit("backup:\(path)")
    }

    private func record(_ entry: BackupEntry) throws {
        // A run killed between recording a directory and creating it records it again otherwise.
        guard !store.state.backups.contains(where: { $0.path == entry.path }) else { return }
        try store.update { $0.backups.append(entry) }
    }

    /// Absolute, normalized, and not setup's own files (those are never backed up).
    private func checked(_ path: String) throws -> String {
        guard path.hasPrefix("/"), !path.split(separator: "/").contains(where: { $0 == ".." || $0 == "." }) else {
            throw SetupError.badPath(path)
        }
        let normalized = "/" + path.split(separator: "/").joined(separator: "/")
        guard !normalized.hasPrefix(SetupPaths.directory + "/"), normalized != SetupPaths.log else {
            throw SetupError.badPath(path)
        }
        return normalized
    }

    // MARK: Revert

    /// Puts one recorded path back as it was: the saved bytes, mode, owner and mtime; or no file.
    /// Directories are left to `removeCreatedDirectory`, after every file is back.
    func restore(_ entry: BackupEntry) throws {
        let target = host(entry.path)
        switch entry.kind {
        case .file:
            let copy = host(SetupPaths.backups + "/" + entry.copy!)
            let bytes: [UInt8]
            do {
                bytes = try HostFile.read(copy)
            } catch {
                throw SetupError.missingBackup(path: entry.path, copy: copy)
            }
            let mtime = timespec(tv_sec: entry.mtimeSeconds ?? 0, tv_nsec: entry.mtimeNanoseconds ?? 0)
            try HostFile.makeDirectories(HostFile.dirname(target))
            try HostFile.write(
                target, bytes, mode: entry.mode ?? 0o644, owner: (entry.uid ?? 0, entry.gid ?? 0), mtime: mtime)
            logger.info("restored file", metadata: ["file": "\(entry.path)"])
        case .absent:
            try HostFile.remove(target)
            logger.info("removed file setup created", metadata: ["file": "\(entry.path)"])
        case .directory:
            return
        }
        // A run killed between staging and renaming leaves the staged copy behind.
        try HostFile.remove(HostFile.temporaryPath(for: target))
        try failpoint.hit("restored:\(entry.path)")
    }

    func removeCreatedDirectory(_ entry: BackupEntry) {
        guard entry.kind == .directory else { return }
        if HostFile.removeDirectoryIfEmpty(host(entry.path)) {
            logger.info("removed directory setup created", metadata: ["file": "\(entry.path)"])
        } else {
            logger.warning("left directory setup created: it is not empty", metadata: ["file": "\(entry.path)"])
        }
    }
}

extension SetupFileSystem {
    /// The permission bits of a file of the machine; nil when it does not exist. Steps that merge
    /// into an admin's file keep its mode.
    public func mode(of path: String) -> UInt32? {
        HostFile.info(root == "/" ? path : root + path)?.mode
    }
}
