import Crypto
import Glibc

/// What `mt-agent send` keeps between runs for one pair of one master target, in its state
/// directory (docs/sender.md "Resuming"): a lock, so one sender at a time drives the pair from this
/// host, and a *dirty* marker that exists from the start of a run until the run ends with
/// everything it sent acknowledged.
///
/// A run killed in between may have changed the source (replay writes it) or read changes from it
/// (follow) that the MT never made durable, while the MT still says `in-sync`. So a run that finds
/// the marker resyncs the pair before anything else — a differential resync, which moves only what
/// differs. The file names are a hash of the MT's fingerprint and the pair id: the id is a name
/// from the command line, never a path component.
public final class SenderRunMarker {
    public let pairID: String
    /// The marker was there when this run started: the last run did not end cleanly.
    public let wasDirty: Bool
    let directory: String
    let markerPath: String
    /// Held (flock) for the life of this object; closing it releases the lock.
    private let lockFD: Int32

    /// Takes the pair's lock and writes the marker durably (file and directory fsynced) before
    /// returning, so a kill at any later moment leaves it behind.
    public init(directory: String, fingerprint: String, pairID: String, describing run: String) throws {
        try Self.makeDirectory(directory)
        let key = SHA256.hash(data: Array("\(fingerprint.lowercased())\n\(pairID)".utf8)).map { String(format2: $0) }.joined()
        let lockPath = "\(directory)/\(key).lock"
        markerPath = "\(directory)/\(key).dirty"
        self.directory = directory
        self.pairID = pairID
        let fd = open(lockPath, O_RDWR | O_CREAT | O_CLOEXEC, 0o600)
        guard fd >= 0 else { throw SenderError.state("cannot open \(lockPath): \(String(cString: strerror(errno)))") }
        guard flock(fd, LOCK_EX | LOCK_NB) == 0 else {
            let e = errno
            close(fd)
            if e == EWOULDBLOCK {
                throw SenderError.state("another mt-agent send is running for pair \(pairID) on this host (lock \(lockPath)); stop it first")
            }
            throw SenderError.state("cannot lock \(lockPath): \(String(cString: strerror(e)))")
        }
        lockFD = fd
        wasDirty = access(markerPath, F_OK) == 0
        do {
            try Self.writeDurably(markerPath, "pair = \(pairID)\n\(run)\npid = \(getpid())\n")
            try Self.syncDirectory(directory)
        } catch {
            close(fd)
            throw error
        }
    }

    deinit { close(lockFD) }

    /// Everything the run sent is acknowledged: the next run may trust the MT's state.
    public func markClean() throws {
        guard unlink(markerPath) == 0 || errno == ENOENT else {
            throw SenderError.state("cannot remove \(markerPath): \(String(cString: strerror(errno)))")
        }
        try Self.syncDirectory(directory)
    }

    static func makeDirectory(_ path: String) throws {
        var at = path.hasPrefix("/") ? "" : "."
        for part in path.split(separator: "/") {
            at += "/" + part
            if mkdir(at, 0o700) != 0 && errno != EEXIST {
                throw SenderError.state("cannot create the state directory \(at): \(String(cString: strerror(errno)))")
            }
        }
    }

    static func writeDurably(_ path: String, _ text: String) throws {
        let fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0o600)
        guard fd >= 0 else { throw SenderError.state("cannot write \(path): \(String(cString: strerror(errno)))") }
        defer { close(fd) }
        let bytes = Array(text.utf8)
        var done = 0
        while done < bytes.count {
            let n = bytes[done...].withUnsafeBytes { Glibc.write(fd, $0.baseAddress, $0.count) }
            if n < 0 && errno == EINTR { continue }
            guard n > 0 else { throw SenderError.state("cannot write \(path): \(String(cString: strerror(errno)))") }
            done += n
        }
        guard fsync(fd) == 0 else { throw SenderError.state("cannot fsync \(path): \(String(cString: strerror(errno)))") }
    }

    static func syncDirectory(_ path: String) throws {
        let fd = open(path, O_RDONLY | O_DIRECTORY | O_CLOEXEC)
        guard fd >= 0, fsync(fd) == 0 else {
            let e = errno
            if fd >= 0 { close(fd) }
            throw SenderError.state("cannot fsync the state directory \(path): \(String(cString: strerror(e)))")
        }
        close(fd)
    }
}
