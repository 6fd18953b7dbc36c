import FoundationEssentials
import Glibc
import Logging
import MTAgentCore
import MTAgentLinux
import Testing

@testable import MTAgentSetup

/// `Tests/Fixtures/setup`: the fixture machines (one per distribution) and their golden files.
let setupFixtures: String = {
    var parts = #filePath.split(separator: "/").map(String.init)
    parts.removeLast(2)  // MTAgentSetupTests/<file>
    return "/" + parts.joined(separator: "/") + "/Fixtures/setup"
}()

let setupDistributions = ["centos7", "rhel8", "ubuntu2004", "debian12"]

/// Set to regenerate the golden files (`MT_AGENT_UPDATE_GOLDEN=1 swift test --filter Setup`).
let updateGolden = getenv("MT_AGENT_UPDATE_GOLDEN").map { String(cString: $0) == "1" } ?? false

/// A copy of a fixture machine in a fresh temp directory (`cp -a`: modes and mtimes kept),
/// removed by `cleanup()`, which tests call from `defer`.
final class SetupScratchRoot {
    let root: String

    init(_ distribution: String) throws {
        var template = Array("/tmp/mt-agent-setup-test.XXXXXX".utf8CString)
        guard let dir = mkdtemp(&template) else { throw SetupTestError("mkdtemp failed") }
        root = String(cString: dir) + "/root"
        try sh("cp", "-a", setupFixtures + "/" + distribution, root)
    }

    func cleanup() {
        _ = try? ProcessRunner().run(["rm", "-rf", "--one-file-system", HostFile.dirname(root)])
    }

    func host(_ path: String) -> String { root + path }

    func text(_ path: String) -> String? {
        (try? HostFile.read(host(path))).map { String(decoding: $0, as: UTF8.self) }
    }

    func put(_ path: String, _ text: String, mode: UInt32 = 0o644) throws {
        try HostFile.makeDirectories(HostFile.dirname(host(path)))
        try HostFile.write(host(path), Array(text.utf8), mode: mode)
    }

    func state() throws -> SetupState {
        try JSONDecoder().decode(SetupState.self, from: Data(try HostFile.read(host(SetupPaths.state))))
    }

    /// Every entry under the root: kind, mode, content (or link target), and mtime.
    func snapshot(excluding: [String] = []) -> TreeSnapshot {
        TreeSnapshot(root: root, excluding: excluding)
    }
}

struct TreeSnapshot: Equatable, CustomStringConvertible {
    struct Entry: Equatable {
        var kind: String
        var mode: UInt32
        var content: [UInt8]
        var mtime: (Int, Int)?

        static func == (a: Entry, b: Entry) -> Bool {
            a.kind == b.kind && a.mode == b.mode && a.content == b.content && a.mtime?.0 == b.mtime?.0 && a.mtime?.1 == b.mtime?.1
        }
    }

    var entries: [String: Entry] = [:]

    /// `excluding`: machine paths whose subtrees are left out (setup's own log and state).
    init(root: String, excluding: [String], withTimes: Bool = true) {
        func walk(_ path: String) {
            let rel = String(path.dropFirst(root.count))
            if excluding.contains(where: { rel == $0 || rel.hasPrefix($0 + "/") }) { return }
            guard let info = HostFile.info(path) else { return }
            let times = withTimes && info.kind != .directory ? (info.mtime.tv_sec, info.mtime.tv_nsec) : nil
            switch info.kind {
            case .file:
                entries[rel] = Entry(kind: "file", mode: info.mode, content: (try? HostFile.read(path)) ?? [], mtime: times)
            case .symlink:
                entries[rel] = Entry(kind: "link", mode: 0, content: Array((Paths.readLink(path) ?? "").utf8), mtime: nil)
            case .directory:
                if !rel.isEmpty { entries[rel] = Entry(kind: "dir", mode: info.mode, content: [], mtime: nil) }
                for name in (RootedFiles(root: "/").list(path) ?? []) { walk(path + "/" + name) }
            case .other:
                entries[rel] = Entry(kind: "other", mode: info.mode, content: [], mtime: nil)
            }
        }
        walk(root)
    }

    func filter(_ keep: (String) -> Bool) -> TreeSnapshot {
        var copy = self
        copy.entries = entries.filter { keep($0.key) }
        return copy
    }

    /// The same tree without mtimes (two runs write at different times).
    func withoutTimes() -> TreeSnapshot {
        var copy = self
        for key in copy.entries.keys { copy.entries[key]?.mtime = nil }
        return copy
    }

    /// What differs, for a readable failure.
    func differences(_ other: TreeSnapshot) -> [String] {
        Set(entries.keys).union(other.entries.keys).sorted().compactMap { key in
            switch (entries[key], other.entries[key]) {
            case (nil, _): return "only in second: \(key)"
            case (_, nil): return "only in first: \(key)"
            case (let a?, let b?) where a != b:
                return "\(key): " + (a.content != b.content ? "content" : a.mode != b.mode ? "mode" : a.kind != b.kind ? "kind" : "mtime")
            default: return nil
            }
        }
    }

    var description: String { "\(entries.count) entries" }
}

/// Records every command and answers from a script: the first rule whose prefix matches.
final class SetupFakeRunner: CommandRunning, @unchecked Sendable {
    private let lock = Lock()
    private var _commands: [[String]] = []
    var rules: [(prefix: [String], result: CommandResult, effect: () -> Void)] = []

    var commands: [[String]] { lock.withLock { _commands } }

    func on(_ prefix: String..., status: Int32 = 0, stdout: String = "", effect: @escaping () -> Void = {}) {
        rules.append((prefix, CommandResult(status: status, stdout: stdout, stderr: status == 0 ? "" : "failed"), effect))
    }

    func run(_ argv: [String]) throws -> CommandResult {
        lock.withLock { _commands.append(argv) }
        for rule in rules where argv.starts(with: rule.prefix) {
            rule.effect()
            return rule.result
        }
        return CommandResult(status: 0, stdout: "", stderr: "")
    }
}

struct SetupTestError: Error, CustomStringConvertible {
    let description: String
    init(_ d: String) { description = d }
}

@discardableResult
func sh(_ argv: String...) throws -> String {
    let r = try ProcessRunner().run(argv)
    guard r.status == 0 else { throw SetupTestError("\(argv.joined(separator: " ")): \(r.stderr)") }
    return r.stdout
}

let quietLogger = Logger(label: "setup-test") { _ in SwiftLogNoOpLogHandler() }

/// Where time stands still, so log lines are predictable.
struct FixedClock: SetupClock {
    func now() -> timespec { timespec(tv_sec: 1_700_000_000, tv_nsec: 0) }
}

/// The engine on a fixture root, wired as the CLI wires it, with a fake runner.
func setupEngine(
    _ root: String, steps: [SetupStep]? = nil, runner: CommandRunning = SetupFakeRunner(), options: SetupOptions = SetupOptions(),
    systemdRunning: Bool = false, failpoint: Failpoint = .none, inventory: Inventory? = nil
) throws -> SetupEngine {
    let inventory = try inventory ?? Discovery.forRoot(root, logger: quietLogger).inventory()
    return SetupEngine(
        root: root, steps: steps ?? SetupPlan.systemSteps(options: options), system: RootedFiles(root: root), runner: runner,
        inventory: inventory, options: options, logger: quietLogger, systemdRunning: systemdRunning, clock: FixedClock(),
        failpoint: failpoint)
}

/// A context on a fixture root for calling one step directly.
func setupContext(
    _ root: String, runner: CommandRunning = SetupFakeRunner(), systemdRunning: Bool = false, inventory: Inventory? = nil
) throws -> SetupContext {
    let store = try SetupStateStore(root: root)
    return SetupContext(
        files: RootedSetupFiles(root: root, store: store, failpoint: .none, logger: quietLogger),
        system: RootedFiles(root: root), runner: runner,
        inventory: try inventory ?? Discovery.forRoot(root, logger: quietLogger).inventory(),
        options: SetupOptions(), logger: quietLogger, systemdRunning: systemdRunning)
}

/// Records every failpoint a run passes, in order.
final class FailpointRecorder: @unchecked Sendable {
    private let lock = Lock()
    private var _points: [String] = []
    var points: [String] { lock.withLock { _points } }
    var failpoint: Failpoint {
        Failpoint { point in self.lock.withLock { self._points.append(point) } }
    }
}
