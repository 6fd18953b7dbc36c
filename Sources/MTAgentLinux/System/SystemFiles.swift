import Glibc
import MTAgentCore
import SystemPackage

/// Read access to a machine's system files (`/sys`, `/proc`, `/etc`, `/dev`), addressed by their
/// absolute path on that machine. Discovery reads nothing else, so pointing it at a captured tree
/// (`--root DIR`) or a recording wrapper (`collect`) needs no other change.
public protocol SystemFiles: Sendable {
    /// The directory that stands for `/`: "/" live, or the `--root` tree.
    var root: String { get }
    /// The whole content of a file; nil when it is missing or unreadable.
    func read(_ path: String) -> [UInt8]?
    /// Entry names of a directory (no "." or ".."), sorted; nil when it is missing.
    func list(_ path: String) -> [String]?
    func exists(_ path: String) -> Bool
    /// The path with every symlink resolved, as an absolute path on the machine; nil when it does
    /// not exist or resolves outside the root.
    func resolve(_ path: String) -> String?
    /// The literal target of a symlink, without following it (its target may not be captured).
    func linkTarget(_ path: String) -> String?
}

extension SystemFiles {
    /// A sysfs/procfs attribute as trimmed text; nil when missing or empty.
    public func text(_ path: String) -> String? {
        guard let bytes = read(path) else { return nil }
        let s = String(decoding: bytes, as: UTF8.self).trimmingWhitespace()
        return s.isEmpty ? nil : s
    }

    /// The path on this host where `path` (absolute on the machine) lives.
    public func hostPath(_ path: String) -> String {
        root == "/" ? path : root + path
    }
}

/// The files of a machine under a root directory, read with plain syscalls.
public struct RootedFiles: SystemFiles {
    public let root: String
    let recorder: AccessRecorder?

    /// A relative `root` is taken from the working directory, as every Unix tool does.
    public init(root: String, recorder: AccessRecorder? = nil) {
        self.root = Paths.normalize(root.hasPrefix("/") ? root : Paths.currentDirectory() + "/" + root)
        self.recorder = recorder
    }

    public func read(_ path: String) -> [UInt8]? {
        recorder?.record(.read(path))
        let fd: FileDescriptor
        do {
            fd = try FileDescriptor.open(FilePath(hostPath(path)), .readOnly, options: [.closeOnExec])
        } catch {
            return nil
        }
        return try? fd.closeAfter { () throws -> [UInt8] in
            var result: [UInt8] = []
            var chunk = [UInt8](repeating: 0, count: 8192)
            while true {
                let n = try chunk.withUnsafeMutableBytes { try fd.read(into: $0) }
                if n == 0 { break }
                result.append(contentsOf: chunk[0..<n])
            }
            return result
        }
    }

    public func list(_ path: String) -> [String]? {
        recorder?.record(.list(path))
        guard let dir = opendir(hostPath(path)) else { return nil }
        defer { closedir(dir) }
        var names: [String] = []
        while let entry = readdir(dir) {
            let name = withUnsafeBytes(of: entry.pointee.d_name) { raw in
                String(decoding: raw.prefix { $0 != 0 }, as: UTF8.self)
            }
            if name != "." && name != ".." { names.append(name) }
        }
        return names.sorted()
    }

    public func exists(_ path: String) -> Bool {
        recorder?.record(.exists(path))
        var st = stat()
        return stat(hostPath(path), &st) == 0
    }

    public func resolve(_ path: String) -> String? {
        recorder?.record(.exists(path))
        guard let resolved = realpath(hostPath(path), nil) else { return nil }
        defer { free(resolved) }
        let host = String(cString: resolved)
        if root == "/" { return host }
        // Kernel symlinks are relative, so a faithful capture resolves inside the tree; anything
        // that escapes it is not part of the captured machine.
        guard host == root || host.hasPrefix(root + "/") else { return nil }
        let inside = String(host.dropFirst(root.count))
        return inside.isEmpty ? "/" : inside
    }
}

extension RootedFiles {
    public func linkTarget(_ path: String) -> String? {
        recorder?.record(.link(path))
        return Paths.readLink(hostPath(path))
    }
}

/// Remembers which system paths discovery touched, so `collect` can capture exactly those.
public final class AccessRecorder: @unchecked Sendable {
    public enum Access: Hashable, Sendable {
        case read(String)
        case list(String)
        case exists(String)
        case link(String)
    }

    private let lock = Lock()
    private var accesses: [Access] = []
    private var seen: Set<Access> = []

    public init() {}

    func record(_ access: Access) {
        lock.withLock {
            if seen.insert(access).inserted { accesses.append(access) }
        }
    }

    public var recorded: [Access] { lock.withLock { accesses } }
}

/// Path arithmetic on absolute, slash-separated paths (no Foundation needed).
public enum Paths {
    public static func join(_ base: String, _ rest: String) -> String {
        normalize(base + "/" + rest)
    }

    /// Collapses `//`, `.` and `..` lexically.
    public static func normalize(_ path: String) -> String {
        var parts: [Substring] = []
        for comp in path.split(separator: "/", omittingEmptySubsequences: true) {
            if comp == "." { continue }
            if comp == ".." {
                if !parts.isEmpty { parts.removeLast() }
                continue
            }
            parts.append(comp)
        }
        return "/" + parts.joined(separator: "/")
    }

    public static func readLink(_ path: String) -> String? {
        var buffer = [CChar](repeating: 0, count: 4096)
        let n = readlink(path, &buffer, buffer.count - 1)
        guard n > 0 else { return nil }
        return String(decoding: buffer[0..<n].map { UInt8(bitPattern: $0) }, as: UTF8.self)
    }

    public static func currentDirectory() -> String {
        guard let cwd = getcwd(nil, 0) else { return "/" }
        defer { free(cwd) }
        return String(cString: cwd)
    }

    public static func basename(_ path: String) -> String {
        String(path.split(separator: "/").last ?? "")
    }

    public static func dirname(_ path: String) -> String {
        var parts = path.split(separator: "/")
        if !parts.isEmpty { parts.removeLast() }
        return "/" + parts.joined(separator: "/")
    }
}
