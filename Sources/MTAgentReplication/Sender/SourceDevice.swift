import Glibc
import MTAgentCore

/// The sender's source: a block device or a regular file, read (and, for `replay`, written)
/// with pread/pwrite. Blocking: used from the sender's thread pool.
public final class SourceDevice: @unchecked Sendable {
    public let path: String
    public let size: UInt64
    let fd: Int32
    /// The source opened with O_DIRECT too, for resync's large reads; -1 where it is refused (tmpfs).
    /// Direct reads see what was written through `fd`: the kernel writes cached pages back first.
    let directFD: Int32

    public init(path: String, writable: Bool = false) throws {
        let fd = open(path, (writable ? O_RDWR : O_RDONLY) | O_CLOEXEC)
        guard fd >= 0 else { throw SenderError.source("cannot open source \(path): \(String(cString: strerror(errno)))") }
        let end = lseek(fd, 0, SEEK_END)
        guard end >= 0 else {
            close(fd)
            throw SenderError.source("cannot size source \(path): \(String(cString: strerror(errno)))")
        }
        self.fd = fd
        directFD = open(path, O_RDONLY | O_CLOEXEC | DirectIO.openFlag)
        self.path = path
        self.size = UInt64(end)
    }

    deinit {
        close(fd)
        if directFD >= 0 { close(directFD) }
    }

    /// Up to `count` bytes from `offset` into `buffer` from byte `position` (aligned), fewer only at
    /// the end of the source; through O_DIRECT when `offset` is aligned.
    public func read(offset: UInt64, count: Int, into buffer: AlignedBuffer, at position: Int = 0) throws -> Int {
        let count = Int(min(UInt64(count), size > offset ? size - offset : 0))
        let base = buffer.bytes.baseAddress! + position
        var done = 0
        if directFD >= 0, DirectIO.isAligned(offset) {
            // Rounded up: a direct read takes whole blocks and stops short at the end of the source.
            let length = min(DirectIO.roundUp(count), buffer.count - position)
            while done < count {
                let n = pread(directFD, base + done, length - done, off_t(offset) + off_t(done))
                if n < 0 && errno == EINTR { continue }
                // EINVAL: the block size is above the alignment, or a short read left an unaligned
                // offset; the page cache reads the rest.
                if n < 0 && errno == EINVAL { break }
                guard n > 0 else { throw SenderError.source("reading \(path) at \(offset + UInt64(done)): \(n == 0 ? "end of file" : String(cString: strerror(errno)))") }
                done += n
            }
            done = min(done, count)
        }
        while done < count {
            let n = pread(fd, base + done, count - done, off_t(offset) + off_t(done))
            if n < 0 && errno == EINTR { continue }
            guard n > 0 else { throw SenderError.source("reading \(path) at \(offset + UInt64(done)): \(n == 0 ? "end of file" : String(cString: strerror(errno)))") }
            done += n
        }
        return count
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
