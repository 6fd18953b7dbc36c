import Glibc
import Logging
import MTAgentCore

/// `mt-agent collect`: runs discovery against the live machine while recording every path it
/// touches, then copies exactly those paths into a tree — symlinks as symlinks (with their
/// original relative targets), attribute files byte for byte — so that discovery run on the tree
/// with `--root` sees what it saw live.
public struct Collector {
    public let source: String
    public let logger: Logger

    public init(source: String = "/", logger: Logger) {
        self.source = Paths.normalize(source)
        self.logger = logger
    }

    public struct Summary: Sendable, Codable {
        public var files: Int
        public var links: Int
        public var directories: Int
        public var disks: Int
    }

    public enum Error: Swift.Error, CustomStringConvertible {
        case destinationExists(String)
        case io(String, errno: Int32)

        public var description: String {
            switch self {
            case .destinationExists(let p): "\(p) exists and is not empty; choose a new directory"
            case .io(let p, let e): "\(p): \(String(cString: strerror(e)))"
            }
        }
    }

    /// Captures into the directory `destination`, which must not exist or be empty.
    public func capture(into destination: String) throws -> Summary {
        if let entries = RootedFiles(root: "/").list(destination), !entries.isEmpty {
            throw Error.destinationExists(destination)
        }
        let recorder = AccessRecorder()
        let files = RootedFiles(root: source, recorder: recorder)
        let discovery = Discovery(
            files: files, enumerator: SysfsEnumerator(files: files), prober: NoProbing(), logger: logger)
        let inventory = try discovery.inventory()

        var tree = TreeCopy(source: source, destination: Paths.normalize(destination))
        try tree.makeDirectory("/")
        for access in recorder.recorded {
            switch access {
            case .read(let path):
                if let real = try tree.mirror(path) { try tree.copyFile(real) }
            case .exists(let path):
                _ = try tree.mirror(path)
            case .list(let path):
                if let real = try tree.mirror(path) { try tree.mirrorEntries(of: real) }
            case .link(let path):
                if let parent = try tree.mirror(Paths.dirname(path)) { try tree.copyLink(Paths.join(parent, Paths.basename(path))) }
            }
        }
        return Summary(files: tree.files, links: tree.links, directories: tree.directories, disks: inventory.disks.count)
    }
}

/// Recreates paths of the source tree under a destination, component by component.
struct TreeCopy {
    let source: String
    let destination: String
    var files = 0
    var links = 0
    var directories = 0
    private var done: Set<String> = []

    init(source: String, destination: String) {
        self.source = source
        self.destination = destination
    }

    private func src(_ path: String) -> String { source == "/" ? path : Paths.join(source, path) }
    private func dst(_ path: String) -> String { Paths.join(destination, path) }

    /// Makes every component of `path` exist in the copy as it is in the source (directories,
    /// and symlinks with their literal targets, followed to capture what they point at).
    /// Returns the fully resolved source path, or nil when it does not exist.
    mutating func mirror(_ path: String, depth: Int = 0) throws -> String? {
        guard depth < 40 else { return nil }  // a symlink loop
        var resolved = "/"
        for component in Paths.normalize(path).split(separator: "/") {
            let candidate = Paths.join(resolved, String(component))
            var st = stat()
            guard lstat(src(candidate), &st) == 0 else { return nil }
            switch st.st_mode & S_IFMT {
            case S_IFLNK:
                guard let target = readLink(src(candidate)) else { return nil }
                try makeSymlink(candidate, target: target)
                let absolute = target.hasPrefix("/") ? target : Paths.join(resolved, target)
                guard let next = try mirror(absolute, depth: depth + 1) else { return nil }
                resolved = next
            case S_IFDIR:
                try makeDirectory(candidate)
                resolved = candidate
            default:
                resolved = candidate
            }
        }
        return resolved
    }

    /// Entries of a listed directory: subdirectories and symlinks are what listings are used for
    /// (partitions, holders, slaves, block class links); files are copied only when read.
    mutating func mirrorEntries(of directory: String) throws {
        guard let names = RootedFiles(root: "/").list(src(directory)) else { return }
        for name in names {
            let path = Paths.join(directory, name)
            var st = stat()
            guard lstat(src(path), &st) == 0 else { continue }
            switch st.st_mode & S_IFMT {
            case S_IFLNK:
                if let target = readLink(src(path)) { try makeSymlink(path, target: target) }
            case S_IFDIR:
                try makeDirectory(path)
            default:
                break
            }
        }
    }

    /// A symlink as itself, without capturing what it points at.
    mutating func copyLink(_ path: String) throws {
        if let target = readLink(src(path)) { try makeSymlink(path, target: target) }
    }

    mutating func copyFile(_ path: String) throws {
        guard done.insert("f:" + path).inserted else { return }
        var st = stat()
        guard stat(src(path), &st) == 0, (st.st_mode & S_IFMT) == S_IFREG else { return }
        guard let bytes = RootedFiles(root: "/").read(src(path)) else { return }  // unreadable attribute
        let fd = open(dst(path), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0o644)
        guard fd >= 0 else { throw Collector.Error.io(dst(path), errno: errno) }
        defer { close(fd) }
        var offset = 0
        while offset < bytes.count {
            let n = bytes.withUnsafeBytes { write(fd, $0.baseAddress! + offset, bytes.count - offset) }
            guard n > 0 else { throw Collector.Error.io(dst(path), errno: errno) }
            offset += n
        }
        files += 1
    }

    mutating func makeDirectory(_ path: String) throws {
        guard done.insert("d:" + path).inserted else { return }
        if mkdir(dst(path), 0o755) != 0 && errno != EEXIST { throw Collector.Error.io(dst(path), errno: errno) }
        directories += 1
    }

    private mutating func makeSymlink(_ path: String, target: String) throws {
        guard done.insert("l:" + path).inserted else { return }
        try makeParents(of: path)
        if symlink(target, dst(path)) != 0 && errno != EEXIST { throw Collector.Error.io(dst(path), errno: errno) }
        links += 1
    }

    private mutating func makeParents(of path: String) throws {
        var current = "/"
        for component in Paths.dirname(path).split(separator: "/") {
            current = Paths.join(current, String(component))
            try makeDirectory(current)
        }
    }

    private func readLink(_ path: String) -> String? { Paths.readLink(path) }
}
