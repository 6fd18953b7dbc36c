import MTAgentCore
import Glibc

/// Errors of the journal, the applier and restore. Each says what failed and where, so an operator can act.
public enum JournalError: Error, Equatable, CustomStringConvertible {
    /// A system call failed; `errno` is the raw value.
    case io(operation: String, path: String, errno: Int32)
    /// A record that fails its magic, length or checksum and is followed by valid records (or sits in a
    /// segment that is not the last one): the journal is damaged, and skipping it would silently lose undo data.
    case corruptRecord(path: String, segment: UInt32, offset: UInt64, detail: String)
    /// A file in the pair directory that looks like a segment but is not named `seg-NNNNNNNN.mtj`, or a gap in numbering.
    case badSegmentSet(path: String, detail: String)
    /// The pair is not in the catalog: the server registers a pair before opening it.
    case unregisteredPair(String)
    /// A restore position that names no TAG record of this journal.
    case positionNotFound(JournalPosition)
    /// The applier was closed (or failed): reopen the pair.
    case closed(pair: String)

    public var description: String {
        switch self {
        case .io(let operation, let path, let errno):
            return "\(operation) \(path) failed: \(String(cString: strerror(errno))) (errno \(errno))"
        case .corruptRecord(let path, let segment, let offset, let detail):
            return "journal segment \(segment) (\(path)) is corrupt at byte offset \(offset): \(detail); "
                + "the pair cannot be opened until the journal is repaired or the pair is resynced from scratch"
        case .badSegmentSet(let path, let detail):
            return "journal directory \(path): \(detail)"
        case .unregisteredPair(let id):
            return "pair \(id) is not registered in the catalog; register it before opening it"
        case .positionNotFound(let position):
            return "no TAG record at journal segment \(position.segment) offset \(position.offset)"
        case .closed(let pair):
            return "pair \(pair) is closed; reopen it"
        }
    }
}

/// An open file descriptor on a target or a segment, closed in deinit. Used from one thread at a time.
final class PosixFile {
    let fd: Int32
    let path: String

    init(path: String, flags: Int32, mode: mode_t = 0o600) throws {
        let fd = Glibc.open(path, flags | O_CLOEXEC, mode)
        guard fd >= 0 else { throw JournalError.io(operation: "open", path: path, errno: errno) }
        self.fd = fd
        self.path = path
    }

    deinit { Glibc.close(fd) }

    /// Works for block devices too, where fstat's size is 0.
    func size() throws -> UInt64 {
        let end = lseek(fd, 0, SEEK_END)
        guard end >= 0 else { throw JournalError.io(operation: "lseek", path: path, errno: errno) }
        return UInt64(end)
    }

    /// Reads up to `count` bytes; fewer only at end of file.
    func read(count: Int, at offset: UInt64) throws -> [UInt8] {
        var buffer = [UInt8](repeating: 0, count: count)
        let done = try buffer.withUnsafeMutableBytes { try read(into: $0, at: offset) }
        if done < count { buffer.removeSubrange(done...) }
        return buffer
    }

    /// Fills `buffer` from `offset`; returns how much was read, less only at end of file.
    func read(into buffer: UnsafeMutableRawBufferPointer, at offset: UInt64) throws -> Int {
        var done = 0
        while done < buffer.count {
            let n = pread(fd, buffer.baseAddress! + done, buffer.count - done, try fileOffset(offset, done, "pread"))
            if n < 0 {
                if errno == EINTR { continue }
                throw JournalError.io(operation: "pread", path: path, errno: errno)
            }
            if n == 0 { break }
            done += n
        }
        return done
    }

    func write(_ bytes: [UInt8], at offset: UInt64) throws {
        try bytes.withUnsafeBytes { try write($0, at: offset) }
    }

    func write(_ raw: UnsafeRawBufferPointer, at offset: UInt64) throws {
        var done = 0
        while done < raw.count {
            let n = pwrite(fd, raw.baseAddress! + done, raw.count - done, try fileOffset(offset, done, "pwrite"))
            if n < 0 {
                if errno == EINTR { continue }
                throw JournalError.io(operation: "pwrite", path: path, errno: errno)
            }
            done += n
        }
    }

    /// `offset + done` as a file offset; an offset no file can have (from a damaged record) is an
    /// error, never a trap.
    private func fileOffset(_ offset: UInt64, _ done: Int, _ operation: String) throws -> off_t {
        let (sum, overflow) = offset.addingReportingOverflow(UInt64(done))
        guard !overflow, let position = off_t(exactly: sum) else {
            throw JournalError.io(operation: "\(operation) at offset \(offset)+\(done)", path: path, errno: EOVERFLOW)
        }
        return position
    }

    /// Asks the kernel to start reading `[offset, offset + count)` now (a hint; errors ignored).
    func willNeed(offset: UInt64, count: Int) {
        guard let start = off_t(exactly: offset) else { return }
        _ = posix_fadvise(fd, start, off_t(count), POSIX_FADV_WILLNEED)
    }

    /// Starts writing back what is dirty in the file without waiting (POSIX_FADV_DONTNEED submits
    /// the writeback, then drops pages that are already clean): a later fdatasync has less to wait
    /// for. A hint; errors ignored.
    func startWriteback() {
        _ = posix_fadvise(fd, 0, 0, POSIX_FADV_DONTNEED)
    }

    func datasync() throws {
        guard fdatasync(fd) == 0 else { throw JournalError.io(operation: "fdatasync", path: path, errno: errno) }
    }

    func truncate(to length: UInt64) throws {
        guard let end = off_t(exactly: length) else { throw JournalError.io(operation: "ftruncate to \(length)", path: path, errno: EOVERFLOW) }
        guard ftruncate(fd, end) == 0 else {
            throw JournalError.io(operation: "ftruncate", path: path, errno: errno)
        }
    }
}

/// Makes a directory entry (a new segment, a new pair directory) durable.
func syncDirectory(_ path: String) throws {
    let dir = try PosixFile(path: path, flags: O_RDONLY | O_DIRECTORY)
    guard fsync(dir.fd) == 0 else { throw JournalError.io(operation: "fsync", path: path, errno: errno) }
}

/// `mkdir -p`, syncing each parent whose entry it created.
func makeDirectories(_ path: String) throws {
    var current = path.hasPrefix("/") ? "" : "."
    for component in path.split(separator: "/") {
        let parent = current.isEmpty ? "/" : current
        current += "/" + component
        if mkdir(current, 0o700) == 0 {
            try syncDirectory(parent)
        } else if errno != EEXIST {
            throw JournalError.io(operation: "mkdir", path: current, errno: errno)
        }
    }
}
