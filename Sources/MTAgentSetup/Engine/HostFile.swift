import Glibc

/// File operations on paths of this host (already joined with the root), durable in the order
/// crash safety needs: a replaced file is never seen half-written, and once a call returns the
/// change survives a power cut (data, then the rename, then the directory are fsynced).
enum HostFile {
    struct Info: Equatable {
        enum Kind: Equatable { case file, directory, symlink, other }
        var kind: Kind
        /// Permission bits only (`0o644`).
        var mode: UInt32
        var uid: UInt32
        var gid: UInt32
        var mtime: timespec
        var size: Int

        static func == (a: Info, b: Info) -> Bool {
            a.kind == b.kind && a.mode == b.mode && a.uid == b.uid && a.gid == b.gid && a.size == b.size
                && a.mtime.tv_sec == b.mtime.tv_sec && a.mtime.tv_nsec == b.mtime.tv_nsec
        }
    }

    /// What is at `path` itself (a symlink is reported as one); nil when nothing is.
    static func info(_ path: String) -> Info? {
        var st = stat()
        guard lstat(path, &st) == 0 else { return nil }
        let kind: Info.Kind
        switch st.st_mode & S_IFMT {
        case S_IFREG: kind = .file
        case S_IFDIR: kind = .directory
        case S_IFLNK: kind = .symlink
        default: kind = .other
        }
        return Info(
            kind: kind, mode: UInt32(st.st_mode & 0o7777), uid: st.st_uid, gid: st.st_gid, mtime: st.st_mtim,
            size: Int(st.st_size))
    }

    static func exists(_ path: String) -> Bool { info(path) != nil }

    static func read(_ path: String) throws(SetupIOError) -> [UInt8] {
        let fd = open(path, O_RDONLY | O_CLOEXEC)
        guard fd >= 0 else { throw SetupIOError("read", path, errno) }
        defer { close(fd) }
        var result: [UInt8] = []
        var chunk = [UInt8](repeating: 0, count: 65536)
        while true {
            let n = chunk.withUnsafeMutableBytes { Glibc.read(fd, $0.baseAddress, $0.count) }
            if n < 0 {
                if errno == EINTR { continue }
                throw SetupIOError("read", path, errno)
            }
            if n == 0 { break }
            result.append(contentsOf: chunk[0..<n])
        }
        return result
    }

    /// The ancestors of `path` that do not exist yet, outermost first.
    static func missingParents(of path: String) -> [String] {
        var missing: [String] = []
        var dir = dirname(path)
        while dir != "/" && !exists(dir) {
            missing.insert(dir, at: 0)
            dir = dirname(dir)
        }
        return missing
    }

    /// Creates one directory (its parent exists) and makes the new entry durable.
    static func makeDirectory(_ path: String, mode: UInt32 = 0o755) throws(SetupIOError) {
        if mkdir(path, mode_t(mode)) != 0 {
            guard errno == EEXIST, info(path)?.kind == .directory else { throw SetupIOError("create directory", path, errno) }
            return
        }
        chmod(path, mode_t(mode))  // umask must not narrow it
        try syncDirectory(dirname(path))
    }

    static func makeDirectories(_ path: String, mode: UInt32 = 0o755) throws(SetupIOError) {
        for dir in missingParents(of: path + "/x") { try makeDirectory(dir, mode: mode) }
    }

    /// Where `write` stages the new content: next to the file, so the rename stays on one filesystem.
    static func temporaryPath(for path: String) -> String {
        dirname(path) + "/." + basename(path) + ".mt-agent-tmp"
    }

    /// Replaces `path` with `bytes`: temp file, fsync, rename, fsync of the directory. `owner` and
    /// `mtime` (restoring a backup) are set on the temp file, so the file never appears without them.
    /// `checkpoint` runs between the steps (the failpoints of crash tests).
    static func write(
        _ path: String, _ bytes: [UInt8], mode: UInt32, owner: (uid: UInt32, gid: UInt32)? = nil, mtime: timespec? = nil,
        checkpoint: (String) throws -> Void = { _ in }
    ) throws {
        let tmp = temporaryPath(for: path)
        let fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC | O_NOFOLLOW, mode_t(mode))
        guard fd >= 0 else { throw SetupIOError("create", tmp, errno) }
        var closed = false
        defer { if !closed { close(fd) } }
        guard fchmod(fd, mode_t(mode)) == 0 else { throw SetupIOError("chmod", tmp, errno) }
        if let owner, fchown(fd, owner.uid, owner.gid) != 0, errno != EPERM {
            throw SetupIOError("chown", tmp, errno)
        }
        var offset = 0
        while offset < bytes.count {
            let n = bytes.withUnsafeBytes { Glibc.write(fd, $0.baseAddress! + offset, $0.count - offset) }
            if n < 0 {
                if errno == EINTR { continue }
                throw SetupIOError("write", tmp, errno)
            }
            offset += n
        }
        if let mtime {
            var times = [timespec(tv_sec: mtime.tv_sec, tv_nsec: (1 << 30) - 2 /* UTIME_OMIT */), mtime]
            guard futimens(fd, &times) == 0 else { throw SetupIOError("set the time of", tmp, errno) }
        }
        guard fsync(fd) == 0 else { throw SetupIOError("fsync", tmp, errno) }
        closed = true
        guard close(fd) == 0 else { throw SetupIOError("close", tmp, errno) }
        try checkpoint("temp")
        guard rename(tmp, path) == 0 else { throw SetupIOError("rename \(tmp) to", path, errno) }
        try checkpoint("renamed")
        try syncDirectory(dirname(path))
    }

    /// Removes a file (not a directory); what does not exist is not an error.
    static func remove(_ path: String) throws(SetupIOError) {
        if unlink(path) != 0 {
            guard errno == ENOENT else { throw SetupIOError("remove", path, errno) }
            return
        }
        try syncDirectory(dirname(path))
    }

    /// Removes a directory when it is empty; true when it is gone.
    @discardableResult
    static func removeDirectoryIfEmpty(_ path: String) -> Bool {
        if rmdir(path) == 0 {
            try? syncDirectory(dirname(path))
            return true
        }
        return errno == ENOENT
    }

    /// Removes a directory tree setup made (its backups); symlinks are removed, never followed.
    static func removeTree(_ path: String) throws(SetupIOError) {
        guard let info = info(path) else { return }
        if info.kind == .directory {
            guard let dir = opendir(path) else { throw SetupIOError("open directory", path, errno) }
            var names: [String] = []
            while let entry = readdir(dir) {
                let name = withUnsafeBytes(of: entry.pointee.d_name) { raw in
                    String(decoding: raw.prefix { $0 != 0 }, as: UTF8.self)
                }
                if name != "." && name != ".." { names.append(name) }
            }
            closedir(dir)
            for name in names { try removeTree(path + "/" + name) }
            guard rmdir(path) == 0 || errno == ENOENT else { throw SetupIOError("remove directory", path, errno) }
        } else {
            guard unlink(path) == 0 || errno == ENOENT else { throw SetupIOError("remove", path, errno) }
        }
    }

    static func syncDirectory(_ path: String) throws(SetupIOError) {
        let fd = open(path, O_RDONLY | O_DIRECTORY | O_CLOEXEC)
        guard fd >= 0 else { throw SetupIOError("open directory", path, errno) }
        defer { close(fd) }
        guard fsync(fd) == 0 else { throw SetupIOError("fsync directory", path, errno) }
    }

    static func dirname(_ path: String) -> String {
        guard let slash = path.lastIndex(of: "/") else { return "." }
        return slash == path.startIndex ? "/" : String(path[..<slash])
    }

    static func basename(_ path: String) -> String {
        guard let slash = path.lastIndex(of: "/") else { return path }
        return String(path[path.index(after: slash)...])
    }
}

/// A system call on a file failed; says which operation on which path and why.
public struct SetupIOError: Error, CustomStringConvertible, Equatable {
    public var operation: String
    public var path: String
    public var errno: Int32

    init(_ operation: String, _ path: String, _ errno: Int32) {
        self.operation = operation
        self.path = path
        self.errno = errno
    }

    public var description: String { "cannot \(operation) \(path): \(String(cString: strerror(errno)))" }
}
