import Glibc
import MTAgentLinux
import Testing

extension Tag {
    @Tag static var medium: Self
    @Tag static var large: Self
}

/// True when the tests may create loop devices, filesystems and mounts (CI runs as root).
let runningAsRoot = geteuid() == 0

/// Everything a test creates on the machine — temp dirs, loop devices, mounts — removed
/// in reverse order by `cleanup()`, which tests call from `defer` so it runs when they fail too.
final class Scratch {
    let runner = ProcessRunner()
    let directory: String
    private var undo: [() -> Void] = []

    init() throws {
        var template = Array("/tmp/mt-agent-test.XXXXXX".utf8CString)
        guard let dir = mkdtemp(&template) else { throw ScratchError("mkdtemp failed") }
        directory = String(cString: dir)
        let path = directory
        undo.append { [runner] in _ = try? runner.run(["rm", "-rf", "--one-file-system", path]) }
    }

    func cleanup() {
        while let step = undo.popLast() { step() }
    }

    @discardableResult
    func run(_ argv: String...) throws -> String {
        let r = try runner.run(argv)
        guard r.status == 0 else { throw ScratchError("\(argv.joined(separator: " ")): \(r.stderr)") }
        return r.stdout
    }

    func path(_ name: String) -> String { directory + "/" + name }

    /// A sparse image file attached to a new loop device (partition scanning on); detached on cleanup.
    func loopDevice(sizeMiB: Int, name: String) throws -> String {
        let image = path(name + ".img")
        try run("truncate", "-s", "\(sizeMiB)M", image)
        let device = try run("losetup", "--find", "--show", "--partscan", image).trimmed
        undo.append { [runner] in _ = try? runner.run(["losetup", "-d", device]) }
        return device
    }

    func mount(_ device: String, at name: String, options: String = "rw") throws -> String {
        let point = path(name)
        try run("mkdir", "-p", point)
        try run("mount", "-o", options, device, point)
        undo.append { [runner] in _ = try? runner.run(["umount", "-l", point]) }
        return point
    }

    /// True when a udevd answers on its control socket (the socket file stays after it exits).
    static func udevdAnswers() throws -> Bool {
        try ProcessRunner().run(["udevadm", "control", "--ping", "--timeout=5"]).status == 0
    }

    /// Waits until udevd has processed every event queued so far (no-op when it is not running).
    func settle() {
        _ = try? runner.run(["udevadm", "settle", "--timeout=10"])
    }

    /// Makes udevd re-read `device` now and waits for it. After a tool writes a filesystem, the
    /// "change" event udevd synthesises from its inotify watch may not be queued yet when a plain
    /// settle returns; asking for the event explicitly removes that race.
    func reprobe(_ device: String) {
        // Bounded: with no udevd to answer, --settle would wait forever.
        _ = try? runner.run(["timeout", "60", "udevadm", "trigger", "--action=change", "--settle", device])
        settle()
    }
}

struct ScratchError: Error, CustomStringConvertible {
    var description: String
    init(_ d: String) { description = d }
}

extension String {
    var trimmed: String {
        var s = Substring(self)
        while let c = s.last, c == "\n" || c == " " { s.removeLast() }
        return String(s)
    }
}
