import Glibc

/// Runs external programs. Behind a protocol so that tests can see what would run.
public protocol CommandRunning: Sendable {
    /// Runs `argv` (argv[0] looked up in PATH), waits, and returns its exit status and output.
    func run(_ argv: [String]) throws -> CommandResult
}

public struct CommandResult: Sendable, Equatable {
    public var status: Int32
    public var stdout: String
    public var stderr: String

    public init(status: Int32, stdout: String = "", stderr: String = "") {
        self.status = status
        self.stdout = stdout
        self.stderr = stderr
    }
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

/// posix_spawn with stdin from /dev/null and stdout/stderr captured.
public struct ProcessRunner: CommandRunning {
    public init() {}

    public func run(_ argv: [String]) throws -> CommandResult {
        var out: [Int32] = [0, 0]
        var err: [Int32] = [0, 0]
        guard pipe(&out) == 0 else { throw CommandError.spawn(argv[0], errno: errno) }
        guard pipe(&err) == 0 else {
            close(out[0]); close(out[1])
            throw CommandError.spawn(argv[0], errno: errno)
        }
        // Close-on-exec, so a child spawned concurrently from another thread does not inherit
        // them and hold our pipes open; dup2 onto 1 and 2 clears the flag for this child.
        for fd in out + err { _ = fcntl(fd, F_SETFD, FD_CLOEXEC) }
        var actions = posix_spawn_file_actions_t()
        posix_spawn_file_actions_init(&actions)
        defer { posix_spawn_file_actions_destroy(&actions) }
        posix_spawn_file_actions_addopen(&actions, STDIN_FILENO, "/dev/null", O_RDONLY, 0)
        posix_spawn_file_actions_adddup2(&actions, out[1], STDOUT_FILENO)
        posix_spawn_file_actions_adddup2(&actions, err[1], STDERR_FILENO)
        for fd in [out[0], out[1], err[0], err[1]] { posix_spawn_file_actions_addclose(&actions, fd) }

        let cArgs = argv.map { strdup($0) } + [nil]
        defer { cArgs.forEach { free($0) } }
        var pid: pid_t = 0
        let rc = posix_spawnp(&pid, argv[0], &actions, nil, cArgs, environ)
        close(out[1])
        close(err[1])
        defer { close(out[0]); close(err[0]) }
        guard rc == 0 else { throw CommandError.spawn(argv[0], errno: rc) }

        // Drain both pipes together so a chatty child can never block on a full pipe.
        var collected: [[UInt8]] = [[], []]
        var fds = [pollfd(fd: out[0], events: Int16(POLLIN), revents: 0), pollfd(fd: err[0], events: Int16(POLLIN), revents: 0)]
        var open = 2
        var buffer = [UInt8](repeating: 0, count: 65536)
        while open > 0 {
            if poll(&fds, nfds_t(fds.count), -1) < 0 {
                if errno == EINTR { continue }
                break
            }
            for i in fds.indices where fds[i].fd >= 0 && fds[i].revents != 0 {
                let n = read(fds[i].fd, &buffer, buffer.count)
                if n > 0 {
                    collected[i] += buffer[0..<n]
                } else if n == 0 || errno != EINTR {
                    fds[i].fd = -1
                    open -= 1
                }
            }
        }
        var status: Int32 = 0
        while waitpid(pid, &status, 0) < 0 && errno == EINTR {}
        let exit = (status & 0x7f) == 0 ? (status >> 8) & 0xff : 128 + (status & 0x7f)
        return CommandResult(
            status: exit, stdout: String(decoding: collected[0], as: UTF8.self),
            stderr: String(decoding: collected[1], as: UTF8.self))
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
