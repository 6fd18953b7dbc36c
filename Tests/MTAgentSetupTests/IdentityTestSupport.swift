import Glibc
import Logging
import MTAgentCore
@testable import MTAgentLinux
import Testing

@testable import MTAgentSetup

extension Tag {
    @Tag static var small: Self
    @Tag static var medium: Self
}

/// A machine root in a fresh temp directory, with a `SetupFileSystem` that writes straight into it
/// (no backups: the engine's real one does those) and records every write with its mode.
final class IdentityScratchRoot: SetupFileSystem, @unchecked Sendable {
    let root: String
    private(set) var writes: [(path: String, mode: UInt32)] = []

    init() throws {
        var template = Array("/tmp/mt-agent-identity.XXXXXX".utf8CString)
        guard let dir = mkdtemp(&template) else { throw IdentityTestError("mkdtemp failed") }
        root = String(cString: dir)
    }

    deinit { _ = try? ProcessRunner().run(["rm", "-rf", "--one-file-system", root]) }

    func host(_ path: String) -> String { root + path }

    func read(_ path: String) -> [UInt8]? { RootedFiles(root: root).read(path) }
    func exists(_ path: String) -> Bool { RootedFiles(root: root).exists(path) }

    func write(_ path: String, _ bytes: [UInt8], mode: UInt32) throws {
        try makeParents(host(path))
        let tmp = host(path) + ".tmp"
        let fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, mode_t(mode))
        guard fd >= 0 else { throw IdentityTestError("open \(tmp): errno \(errno)") }
        defer { close(fd) }
        fchmod(fd, mode_t(mode))
        let n = bytes.withUnsafeBytes { Glibc.write(fd, $0.baseAddress, $0.count) }
        guard n == bytes.count else { throw IdentityTestError("short write to \(tmp)") }
        guard rename(tmp, host(path)) == 0 else { throw IdentityTestError("rename \(tmp): errno \(errno)") }
        writes.append((path, mode))
    }

    func remove(_ path: String) throws { unlink(host(path)) }

    /// Writes a file of the machine directly (fixture content), bypassing the write log.
    func put(_ path: String, _ text: String, mode: UInt32 = 0o644) throws {
        try makeParents(host(path))
        let fd = open(host(path), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, mode_t(mode))
        guard fd >= 0 else { throw IdentityTestError("open \(path): errno \(errno)") }
        defer { close(fd) }
        fchmod(fd, mode_t(mode))
        _ = Array(text.utf8).withUnsafeBytes { Glibc.write(fd, $0.baseAddress, $0.count) }
    }

    func text(_ path: String) -> String? { read(path).map { String(decoding: $0, as: UTF8.self) } }

    func mode(_ path: String) -> UInt32? { ModeBits.of(hostPath: host(path)) }

    private func makeParents(_ hostPath: String) throws {
        let r = try ProcessRunner().run(["mkdir", "-p", Paths.dirname(hostPath)])
        guard r.status == 0 else { throw IdentityTestError("mkdir: \(r.stderr)") }
    }
}

/// Records every command; answers status 0 unless told otherwise, and may run a side effect
/// (e.g. "install" a tool by creating its file).
final class IdentityFakeRunner: CommandRunning, @unchecked Sendable {
    private(set) var commands: [[String]] = []
    var status: Int32 = 0
    var onRun: ([String]) -> Void = { _ in }

    func run(_ argv: [String]) throws -> CommandResult {
        commands.append(argv)
        onRun(argv)
        return CommandResult(status: status, stdout: "", stderr: status == 0 ? "" : "E: Unable to locate package")
    }
}

struct IdentityTestError: Error, CustomStringConvertible {
    let description: String
    init(_ d: String) { description = d }
}

func identityContext(
    _ root: IdentityScratchRoot, options: SetupOptions = SetupOptions(), runner: CommandRunning = IdentityFakeRunner()
) -> SetupContext {
    SetupContext(
        files: root, system: RootedFiles(root: root.root), runner: runner,
        inventory: Inventory(host: Host(root: root.root), disks: []), options: options,
        logger: Logger(label: "identity-test", factory: { _ in SwiftLogNoOpLogHandler() }),
        systemdRunning: false
    )
}

/// Runs a host command and returns its stdout, failing the test on a non-zero status.
func identityRun(_ argv: String...) throws -> String {
    let r = try ProcessRunner().run(argv)
    guard r.status == 0 else { throw IdentityTestError("\(argv.joined(separator: " ")): \(r.stderr)") }
    return r.stdout
}
