import Dispatch
import Glibc
import MTAgentCore

/// What a path on this host is, as stat(2) sees it (symlinks followed).
public enum PathKind: Sendable, Equatable {
    case missing
    case directory
    /// A block device and its `major:minor`.
    case blockDevice(devno: String)
    case other
    case inaccessible(String)
}

public struct VolumeError: Error, Equatable, CustomStringConvertible {
    public var description: String
    public init(_ description: String) { self.description = description }
}

/// The live side of a retention check beyond reading system files: stat, statvfs and the
/// write + fsync probe. Behind a protocol so that a test can hand in a volume it describes.
public protocol VolumeProbing: Sendable {
    func kind(of hostPath: String) -> PathKind
    func space(of hostPath: String) throws -> VolumeSpace
    /// Writes and fsyncs a small file in the directory, removes it, and gives up waiting after
    /// `timeout` without ever blocking longer.
    func writeProbe(in hostDirectory: String, timeout: Duration) -> WriteProbeOutcome
}

public struct LiveVolumes: VolumeProbing {
    public init() {}

    public func kind(of hostPath: String) -> PathKind {
        var st = stat()
        guard stat(hostPath, &st) == 0 else {
            let e = errno
            return e == ENOENT || e == ENOTDIR ? .missing : .inaccessible(String(cString: strerror(e)))
        }
        switch st.st_mode & S_IFMT {
        case S_IFDIR: return .directory
        case S_IFBLK: return .blockDevice(devno: Self.devno(UInt64(st.st_rdev)))
        default: return .other
        }
    }

    /// glibc's `major()`/`minor()` are macros Swift cannot import; this is their encoding.
    static func devno(_ dev: UInt64) -> String {
        let major = ((dev >> 8) & 0xfff) | ((dev >> 32) & ~UInt64(0xfff))
        let minor = (dev & 0xff) | ((dev >> 12) & ~UInt64(0xff))
        return "\(major):\(minor)"
    }

    public func space(of hostPath: String) throws -> VolumeSpace {
        var s = statvfs()
        guard statvfs(hostPath, &s) == 0 else {
            throw VolumeError("statvfs \(hostPath): \(String(cString: strerror(errno)))")
        }
        let unit = UInt64(s.f_frsize == 0 ? s.f_bsize : s.f_frsize)
        return VolumeSpace(
            totalBytes: UInt64(s.f_blocks) * unit, availableBytes: UInt64(s.f_bavail) * unit,
            readOnly: s.f_flag & UInt(ST_RDONLY) != 0)
    }

    public func writeProbe(in hostDirectory: String, timeout: Duration) -> WriteProbeOutcome {
        WriteProbe(directory: hostDirectory, timeout: timeout).run()
    }
}

/// A 4 KiB write + fsync of a new file in a directory, then its removal, done by a child
/// process (`sh -c 'dd … conv=fsync,excl; rm'`) that is waited for at most `timeout`.
///
/// Why a child process and not a thread: on a frozen filesystem the writer sleeps uninterruptibly
/// in the kernel (`percpu_rwsem_wait`) until the thaw. A thread stuck there keeps its whole
/// process from exiting: `exit()` returns to nobody, the parent's wait and the reader of its
/// stdout hang until the thaw (measured on Linux 6.18: exit seen 6 s late, at the thaw). A stuck
/// child is another process: mt-agent gives up waiting, reports the timeout and exits on time.
///
/// The child is not killed on timeout: a SIGKILL takes effect only at the thaw, after the pending
/// create has completed, and would leave an empty probe file behind. Left alone it finishes after
/// the thaw, removes its file and exits. It runs in its own process group (a Ctrl-C of mt-agent
/// does not reach it) with only /dev/null and a pipe open, so it holds none of the caller's
/// descriptors — the caller's stdout reaches EOF when mt-agent exits.
struct WriteProbe {
    var directory: String
    var timeout: Duration

    static let script = #"dd if=/dev/zero of="$1" bs=4096 count=1 conv=fsync,excl status=none; s=$?; rm -f -- "$1"; exit $s"#

    func run() -> WriteProbeOutcome {
        let clock = ContinuousClock()
        let start = clock.now
        let file = directory + (directory.hasSuffix("/") ? "" : "/")
            + ".mt-agent-write-probe.\(getpid()).\(String(UInt64.random(in: 0...UInt64.max), radix: 16))"

        var err: [Int32] = [0, 0]
        guard pipe(&err) == 0 else { return .failed("cannot create a pipe: \(String(cString: strerror(errno)))") }
        // Close-on-exec at once (pipe2 is not imported): no other child may hold this pipe open.
        for fd in err { _ = fcntl(fd, F_SETFD, FD_CLOEXEC) }
        let pid: pid_t
        do {
            pid = try spawn(["/bin/sh", "-c", Self.script, "mt-agent-write-probe", file], stderr: err[1])
        } catch {
            close(err[0])
            close(err[1])
            return .failed("\(error)")
        }
        close(err[1])

        var output: [UInt8] = []
        var buffer = [UInt8](repeating: 0, count: 4096)
        var fds = [pollfd(fd: err[0], events: Int16(POLLIN), revents: 0)]
        while true {
            let left = start + timeout - clock.now
            guard left > .zero else { return abandon(pid, fd: err[0]) }
            let (s, atto) = left.components
            let ms = Int32(clamping: s * 1000 + atto / 1_000_000_000_000_000 + 1)
            let ready = poll(&fds, 1, ms)
            if ready < 0 && errno == EINTR { continue }
            if ready == 0 { return abandon(pid, fd: err[0]) }
            let n = read(err[0], &buffer, buffer.count)
            if n > 0 {
                output += buffer[0..<n]
                continue
            }
            if n < 0 && errno == EINTR { continue }
            break  // EOF: sh, dd and rm have all exited
        }
        close(err[0])
        var status: Int32 = 0
        while waitpid(pid, &status, 0) < 0 && errno == EINTR {}
        let took = clock.now - start
        let exited = (status & 0x7f) == 0
        if exited && (status >> 8) & 0xff == 0 { return .succeeded(took) }
        let text = String(decoding: output, as: UTF8.self).split(separator: "\n").first.map(String.init)
        return .failed(text ?? (exited ? "exit status \((status >> 8) & 0xff)" : "killed by signal \(status & 0x7f)"))
    }

    /// Stops waiting: the child finishes (and cleans up) whenever the filesystem lets it; a
    /// background wait reaps it then, so a long-running caller collects no zombies. A thread
    /// blocked in waitpid sleeps interruptibly and never delays exit.
    private func abandon(_ pid: pid_t, fd: Int32) -> WriteProbeOutcome {
        close(fd)
        DispatchQueue.global(qos: .background).async {
            var status: Int32 = 0
            while waitpid(pid, &status, 0) < 0 && errno == EINTR {}
        }
        return .timedOut(timeout)
    }

    private func spawn(_ argv: [String], stderr: Int32) throws -> pid_t {
        var actions = posix_spawn_file_actions_t()
        posix_spawn_file_actions_init(&actions)
        defer { posix_spawn_file_actions_destroy(&actions) }
        posix_spawn_file_actions_addopen(&actions, STDIN_FILENO, "/dev/null", O_RDONLY, 0)
        posix_spawn_file_actions_addopen(&actions, STDOUT_FILENO, "/dev/null", O_WRONLY, 0)
        posix_spawn_file_actions_adddup2(&actions, stderr, STDERR_FILENO)
        for fd in Self.inheritedDescriptors() where fd != stderr {
            posix_spawn_file_actions_addclose(&actions, fd)
        }

        var attributes = posix_spawnattr_t()
        posix_spawnattr_init(&attributes)
        defer { posix_spawnattr_destroy(&attributes) }
        var empty = sigset_t()
        sigemptyset(&empty)
        posix_spawnattr_setsigmask(&attributes, &empty)
        posix_spawnattr_setpgroup(&attributes, 0)
        posix_spawnattr_setflags(&attributes, Int16(POSIX_SPAWN_SETPGROUP | POSIX_SPAWN_SETSIGMASK))

        let cArgs = argv.map { strdup($0) } + [nil]
        defer { cArgs.forEach { free($0) } }
        var pid: pid_t = 0
        let rc = posix_spawn(&pid, argv[0], &actions, &attributes, cArgs, environ)
        guard rc == 0 else { throw VolumeError("cannot run \(argv[0]): \(String(cString: strerror(rc)))") }
        return pid
    }

    /// Descriptors above stderr that a child would inherit (no close-on-exec): whatever the
    /// process that started mt-agent leaked into it. The probe child must not hold them.
    static func inheritedDescriptors() -> [Int32] {
        guard let names = RootedFiles(root: "/").list("/proc/self/fd") else { return [] }
        return names.compactMap { Int32($0) }.filter { fd in
            guard fd > 2 else { return false }
            let flags = fcntl(fd, F_GETFD)
            return flags >= 0 && flags & FD_CLOEXEC == 0
        }
    }
}
