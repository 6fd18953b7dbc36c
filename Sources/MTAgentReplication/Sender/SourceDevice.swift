import Glibc

/// The sender's source: a block device or a regular file, read (and, for `replay`, written)
/// with pread/pwrite. Blocking: used from the sender's thread pool.
public final class SourceDevice: @unchecked Sendable {
    public let path: String
    public let size: UInt64
    let fd: Int32

    public init(path: String, writable: Bool = false) throws {
        let fd = open(path, (writable ? O_RDWR : O_RDONLY) | O_CLOEXEC)
        guard fd >= 0 else { throw SenderError.source("cannot open source \(path): \(String(cString: strerror(errno)))") }
        let end = lseek(fd, 0, SEEK_END)
        guard end >= 0 else {
            close(fd)
            throw SenderError.source("cannot size source \(path): \(String(cString: strerror(errno)))")
        }
        self.fd = fd
        self.path = path
        self.size = UInt64(end)
    }

    deinit { close(fd) }

    public func read(offset: UInt64, count: Int) throws -> [UInt8] {
        let count = Int(min(UInt64(count), size > offset ? size - offset : 0))
        var out = [UInt8](repeating: 0, count: count)
        var done = 0
        while done < count {
            let n = out.withUnsafeMutableBytes { pread(fd, $0.baseAddress! + done, count - done, off_t(offset) + off_t(done)) }
            if n < 0 && errno == EINTR { continue }
            guard n > 0 else { throw SenderError.source("reading \(path) at \(offset + UInt64(done)): \(n == 0 ? "end of file" : String(cString: strerror(errno)))") }
            done += n
        }
        return out
    }

    public func write(_ data: [UInt8], offset: UInt64) throws {
        var done = 0
        while done < data.count {
            let n = data.withUnsafeBytes { pwrite(fd, $0.baseAddress! + done, data.count - done, off_t(offset) + off_t(done)) }
            if n < 0 && errno == EINTR { continue }
            guard n > 0 else { throw SenderError.source("writing \(path) at \(offset): \(String(cString: strerror(errno)))") }
            done += n
        }
    }
}
