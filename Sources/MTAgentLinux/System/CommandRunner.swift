import Glibc

/// Runs external programs. Behind a protocol so that tests can see what would run.
public protocol CommandRunning: Sendable {
    /// Runs `argv` (argv[0] looked up in PATH), waits, and returns the exit status and stderr.
    func run(_ argv: [String]) throws -> CommandResult
}

public struct CommandResult: Sendable, Equatable {
    public var status: Int32
    public var stderr: String
}

public enum CommandError: Error, CustomStringConvertible {
    case spawn(String, errno: Int32)
    case failed(String, status: Int32, stderr: String)

    public var description: String {
        switch self {
        case .spawn(let cmd, let e): "cannot run \(cmd): \(String(cString: strerror(e)))"
        case .failed(let cmd, let status, let err):
            "\(cmd) exited with status \(status)" + (err.isEmpty ? "" : ": \(err.split(separator: "\n").first ?? "")")
        }
    }
}

/// posix_spawn with stdout discarded and stderr captured.
public struct ProcessRunner: CommandRunning {
    public init() {}

    public func run(_ argv: [String]) throws -> CommandResult {
        var pipeFDs: [Int32] = [0, 0]
        guard pipe(&pipeFDs) == 0 else { throw CommandError.spawn(argv[0], errno: errno) }
        var actions = posix_spawn_file_actions_t()
        posix_spawn_file_actions_init(&actions)
        defer { posix_spawn_file_actions_destroy(&actions) }
        posix_spawn_file_actions_addopen(&actions, STDOUT_FILENO, "/dev/null", O_WRONLY, 0)
        posix_spawn_file_actions_adddup2(&actions, pipeFDs[1], STDERR_FILENO)
        posix_spawn_file_actions_addclose(&actions, pipeFDs[0])

        let cArgs = argv.map { strdup($0) } + [nil]
        defer { cArgs.forEach { free($0) } }
        var pid: pid_t = 0
        let rc = posix_spawnp(&pid, argv[0], &actions, nil, cArgs, environ)
        close(pipeFDs[1])
        guard rc == 0 else {
            close(pipeFDs[0])
            throw CommandError.spawn(argv[0], errno: rc)
        }
        var output: [UInt8] = []
        var buffer = [UInt8](repeating: 0, count: 4096)
        while true {
            let n = read(pipeFDs[0], &buffer, buffer.count)
            if n <= 0 { break }
            output += buffer[0..<n]
        }
        close(pipeFDs[0])
        var status: Int32 = 0
        while waitpid(pid, &status, 0) < 0 && errno == EINTR {}
        let exit = (status & 0x7f) == 0 ? (status >> 8) & 0xff : 128 + (status & 0x7f)
        return CommandResult(status: exit, stderr: String(decoding: output, as: UTF8.self))
    }
}

/// Writes a directory tree made by `body` into a gzip'ed tarball, through a private temp dir.
public enum Tarball {
    public static func create<T>(_ path: String, runner: CommandRunning, _ body: (String) throws -> T) throws -> T {
        var template = Array("/tmp/mt-agent-collect.XXXXXX".utf8CString)
        guard let dir = mkdtemp(&template) else { throw CommandError.spawn("mkdtemp", errno: errno) }
        let tree = String(cString: dir)
        defer { _ = try? runner.run(["rm", "-rf", "--one-file-system", tree]) }
        let result = try body(tree)
        let tar = try runner.run(["tar", "-C", tree, "-czf", path, "."])
        guard tar.status == 0 else { throw CommandError.failed("tar", status: tar.status, stderr: tar.stderr) }
        return result
    }
}
