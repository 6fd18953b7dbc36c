import Glibc
import MTAgentCore

/// Why a path under the retention volume was refused or could not be made or removed.
public enum RetentionPathError: Error, Equatable, CustomStringConvertible {
    /// A component that must be a real directory is a symlink or something else: it is never followed.
    case notADirectory(path: String)
    /// A directory on another filesystem than its parent (a mount inside the tree): never deleted into.
    case otherFilesystem(path: String)
    /// A tree deeper than any mt-agent writes: refused rather than recursed into.
    case tooDeep(path: String)
    case io(operation: String, path: String, errno: Int32)

    public var description: String {
        switch self {
        case .notADirectory(let path):
            return "\(path) is a symlink or not a directory; mt-agent never follows a link under the retention volume "
                + "— move it away and let mt-agent recreate the directory"
        case .otherFilesystem(let path):
            return "\(path) is on another filesystem (a mount inside the retention tree); unmount it first"
        case .tooDeep(let path):
            return "\(path) is nested deeper than \(RetentionDirectory.maxDepth) levels; mt-agent never writes such a tree — remove it by hand"
        case .io(let operation, let path, let errno):
            return "\(operation) \(path) failed: \(String(cString: strerror(errno))) (errno \(errno))"
        }
    }
}

/// An open directory under the retention volume, reached one component at a time with `openat`
/// and `O_NOFOLLOW | O_DIRECTORY`, so that no symlink and no `..` can lead a write or a delete out of
/// the tree. Components below the starting directory are `Identifier`s only. Used from one thread.
public final class RetentionDirectory {
    let fd: Int32
    /// For messages, and for callers that go on by path (segment files) once every component is checked.
    public let path: String
    let device: dev_t

    static let maxDepth = 16

    private init(fd: Int32, path: String) throws {
        var st = stat()
        guard fstat(fd, &st) == 0 else {
            let e = errno
            Glibc.close(fd)
            throw RetentionPathError.io(operation: "fstat", path: path, errno: e)
        }
        self.fd = fd; self.path = path; self.device = st.st_dev
    }

    deinit { Glibc.close(fd) }

    /// Opens `path`, a directory the admin configured (the retention's `mt-agent` directory, a journal
    /// root), creating it and its parents when `create` is set. Its last component must not be a symlink.
    public static func open(_ path: String, create: Bool) throws -> RetentionDirectory {
        if create { try makeDirectories(path) }
        let fd = Glibc.open(path, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC)
        guard fd >= 0 else { throw openError(path, errno) }
        return try RetentionDirectory(fd: fd, path: path)
    }

    /// The subdirectory `name`, created (and its entry made durable) when missing and `create` is set;
    /// nil when it is missing and `create` is not set. A symlink or non-directory there is refused.
    public func child(_ name: Identifier, create: Bool) throws -> RetentionDirectory? {
        let childPath = path + "/" + name.value
        if create {
            if mkdirat(fd, name.value, 0o700) == 0 {
                guard fsync(fd) == 0 else { throw RetentionPathError.io(operation: "fsync", path: path, errno: errno) }
            } else if errno != EEXIST {
                throw RetentionPathError.io(operation: "mkdir", path: childPath, errno: errno)
            }
        }
        let child = openat(fd, name.value, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC)
        guard child >= 0 else {
            if errno == ENOENT && !create { return nil }
            throw Self.openError(childPath, errno)
        }
        return try RetentionDirectory(fd: child, path: childPath)
    }

    /// The subdirectory `name`, created when missing; a symlink or non-directory there is refused.
    public func make(_ name: Identifier) throws -> RetentionDirectory {
        guard let child = try child(name, create: true) else { throw RetentionPathError.io(operation: "open", path: path + "/" + name.value, errno: ENOENT) }
        return child
    }

    /// Walks down `names` from here, creating what is missing.
    public func make(_ names: [Identifier]) throws -> RetentionDirectory {
        try names.reduce(self) { try $0.make($1) }
    }

    /// Walks down `names` from here; nil if one is missing and `create` is not set.
    public func descend(_ names: [Identifier], create: Bool) throws -> RetentionDirectory? {
        var current = self
        for name in names {
            guard let next = try current.child(name, create: create) else { return nil }
            current = next
        }
        return current
    }

    /// Removes the entry `name` and, if it is a directory, everything under it, never following a
    /// symlink (a link is removed, not its target) and never crossing into another filesystem.
    /// Returns the bytes the removed regular files held; 0 when there was nothing.
    @discardableResult
    public func remove(_ name: Identifier) throws -> UInt64 {
        let bytes = try removeEntry(Array(name.value.utf8CString), depth: 0)
        guard fsync(fd) == 0 else { throw RetentionPathError.io(operation: "fsync", path: path, errno: errno) }
        return bytes
    }

    /// Unlinks the file `name` of this directory (a journal segment); returns its size, or nil when
    /// it was not there. A directory is refused.
    public func unlinkFile(_ name: String) throws -> UInt64? {
        precondition(!name.contains("/") && name != "." && name != "..", "unlinkFile takes a generated file name")
        var st = stat()
        guard fstatat(fd, name, &st, AT_SYMLINK_NOFOLLOW) == 0 else {
            if errno == ENOENT { return nil }
            throw RetentionPathError.io(operation: "stat", path: path + "/" + name, errno: errno)
        }
        guard (st.st_mode & S_IFMT) != S_IFDIR else { throw RetentionPathError.io(operation: "unlink", path: path + "/" + name, errno: EISDIR) }
        guard unlinkat(fd, name, 0) == 0 else { throw RetentionPathError.io(operation: "unlink", path: path + "/" + name, errno: errno) }
        return (st.st_mode & S_IFMT) == S_IFREG ? UInt64(max(0, st.st_size)) : 0
    }

    /// Makes the entries created or removed in this directory durable.
    public func sync() throws {
        guard fsync(fd) == 0 else { throw RetentionPathError.io(operation: "fsync", path: path, errno: errno) }
    }

    // MARK: Internals

    /// `name` is kept as the bytes readdir gave (NUL-terminated), so a name that is not UTF-8 is still removed.
    private func removeEntry(_ name: [CChar], depth: Int) throws -> UInt64 {
        let entryPath = path + "/" + String(decoding: name.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
        var st = stat()
        guard fstatat(fd, name, &st, AT_SYMLINK_NOFOLLOW) == 0 else {
            if errno == ENOENT { return 0 }
            throw RetentionPathError.io(operation: "stat", path: entryPath, errno: errno)
        }
        var bytes: UInt64 = 0
        if (st.st_mode & S_IFMT) == S_IFDIR {
            guard depth < Self.maxDepth else { throw RetentionPathError.tooDeep(path: entryPath) }
            guard st.st_dev == device else { throw RetentionPathError.otherFilesystem(path: entryPath) }
            let child = openat(fd, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC)
            guard child >= 0 else { throw Self.openError(entryPath, errno) }
            let directory = try RetentionDirectory(fd: child, path: entryPath)
            for inner in try directory.names() { bytes += try directory.removeEntry(inner, depth: depth + 1) }
            guard unlinkat(fd, name, AT_REMOVEDIR) == 0 else {
                throw RetentionPathError.io(operation: "rmdir", path: entryPath, errno: errno)
            }
        } else {
            if (st.st_mode & S_IFMT) == S_IFREG { bytes = UInt64(max(0, st.st_size)) }
            guard unlinkat(fd, name, 0) == 0 || errno == ENOENT else {
                throw RetentionPathError.io(operation: "unlink", path: entryPath, errno: errno)
            }
        }
        return bytes
    }

    /// The names in this directory but `.` and `..`, NUL-terminated.
    private func names() throws -> [[CChar]] {
        let copy = dup(fd)
        guard copy >= 0 else { throw RetentionPathError.io(operation: "dup", path: path, errno: errno) }
        guard let stream = fdopendir(copy) else {
            let e = errno
            Glibc.close(copy)
            throw RetentionPathError.io(operation: "opendir", path: path, errno: e)
        }
        defer { closedir(stream) }
        rewinddir(stream)
        var out: [[CChar]] = []
        while let entry = readdir(stream) {
            let name: [CChar] = withUnsafeBytes(of: entry.pointee.d_name) { raw in
                raw.prefix { $0 != 0 }.map { CChar(bitPattern: $0) } + [0]
            }
            if name != [46, 0] && name != [46, 46, 0] { out.append(name) }
        }
        return out
    }

    private static func openError(_ path: String, _ e: Int32) -> RetentionPathError {
        e == ELOOP || e == ENOTDIR ? .notADirectory(path: path) : .io(operation: "open", path: path, errno: e)
    }
}
