import Glibc

/// An exclusive `flock` held for the life of the object (or until `release`). The kernel drops it
/// when the process dies, so a killed holder never leaves it stuck.
public final class FileLock: @unchecked Sendable {
    private var fd: Int32
    public let path: String

    private init(fd: Int32, path: String) { self.fd = fd; self.path = path }

    /// Takes the lock without waiting; nil when another process holds it.
    public static func tryExclusive(path: String, mode: mode_t = 0o600) throws -> FileLock? {
        let fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, mode)
        guard fd >= 0 else { throw FileLockError(path: path, errno: errno) }
        if flock(fd, LOCK_EX | LOCK_NB) != 0 {
            let error = errno
            close(fd)
            if error == EWOULDBLOCK { return nil }
            throw FileLockError(path: path, errno: error)
        }
        return FileLock(fd: fd, path: path)
    }

    public func release() {
        if fd >= 0 {
            close(fd)
            fd = -1
        }
    }

    deinit { release() }
}

public struct FileLockError: Error, CustomStringConvertible {
    public var path: String
    public var errno: Int32
    public var description: String { "cannot lock \(path): \(String(cString: strerror(errno)))" }
}
