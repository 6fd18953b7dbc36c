import Foundation
import Glibc
import Testing

/// `mt-agent setup` as an admin runs it, on copies of the fixture machines under
/// Tests/Fixtures/setup (never this machine's /etc), including real kill -9s mid-run.
@Suite("mt-agent setup", .tags(.large), .serialized)
struct SetupCommandTests {
    /// A fixture machine copied with `cp -a` into a temp directory.
    final class Machine {
        let dir: URL
        let root: String
        /// A passphrase file of mode 0600, as setup requires.
        let passphrase: String

        init(_ name: String) throws {
            dir = try temporaryDirectory()
            root = dir.appendingPathComponent("root").path
            passphrase = dir.appendingPathComponent("passphrase").path
            FileManager.default.createFile(
                atPath: passphrase, contents: Data("replication passphrase\n".utf8), attributes: [.posixPermissions: 0o600])
            let cp = Process()
            cp.executableURL = URL(fileURLWithPath: "/bin/cp")
            cp.arguments = ["-a", fixture("setup/\(name)"), root]
            try cp.run()
            cp.waitUntilExit()
            #expect(cp.terminationStatus == 0)
        }

        func cleanup() { try? FileManager.default.removeItem(at: dir) }

        /// Path → (kind, mode, bytes, mtime); `excluding` leaves subtrees out.
        func tree(excluding: [String] = [], times: Bool = true) -> [String: String] {
            var result: [String: String] = [:]
            func walk(_ path: String) {
                let rel = String(path.dropFirst(root.count))
                if excluding.contains(where: { rel == $0 || rel.hasPrefix($0 + "/") }) { return }
                var st = stat()
                guard lstat(path, &st) == 0 else { return }
                let mtime = times ? " \(st.st_mtim.tv_sec).\(st.st_mtim.tv_nsec)" : ""
                switch st.st_mode & S_IFMT {
                case S_IFDIR:
                    if !rel.isEmpty { result[rel] = "dir \(String(st.st_mode & 0o7777, radix: 8))" }
                    for name in ((try? FileManager.default.contentsOfDirectory(atPath: path)) ?? []).sorted() {
                        walk(path + "/" + name)
                    }
                case S_IFLNK:
                    result[rel] = "link " + ((try? FileManager.default.destinationOfSymbolicLink(atPath: path)) ?? "")
                default:
                    let data = FileManager.default.contents(atPath: path) ?? Data()
                    result[rel] = "file \(String(st.st_mode & 0o7777, radix: 8)) \(data.base64EncodedString())" + mtime
                }
            }
            walk(root)
            return result
        }

        /// The state file with what differs between an interrupted and an uninterrupted run
        /// (the step summaries, which say which run made a change) left out.
        func state() throws -> [String] {
            let data = try Data(contentsOf: URL(fileURLWithPath: root + "/var/lib/mt-agent/setup/state.json"))
            let object = try #require(try JSONSerialization.jsonObject(with: data) as? [String: Any])
            let steps = (object["steps"] as? [[String: Any]] ?? []).map { step in
                "\(step["id"]!) \(step["status"]!) \((step["outcome"] as? [String: Any])?["rebootReason"] ?? "-")"
            }
            let backups = (object["backups"] as? [[String: Any]] ?? []).map { "\($0["path"]!) \($0["kind"]!)" }
            let reboot = (object["reboot"] as? [[String: Any]] ?? []).map { "\($0["step"]!): \($0["reason"]!)" }
            return steps + backups + reboot
        }

        func write(_ path: String, _ text: String) throws {
            try text.write(toFile: root + path, atomically: false, encoding: .utf8)
        }
    }

    /// Runs the binary with an environment addition; returns the process when told not to wait.
    static func start(_ arguments: [String], environment: [String: String]) throws -> (Process, Pipe, Pipe) {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: binary)
        process.arguments = arguments
        process.environment = ProcessInfo.processInfo.environment.merging(environment) { _, new in new }
        let out = Pipe()
        let err = Pipe()
        process.standardOutput = out
        process.standardError = err
        process.standardInput = FileHandle.nullDevice
        try process.run()
        return (process, out, err)
    }

        /// Setup's own log and state, and the TLS key and passphrase key, which are random by design
    /// (a fresh key pair and salt every time they are made).
    let ownFiles = [
        "/var/log/mt-agent", "/var/lib/mt-agent/setup/state.json", "/etc/mt-agent/tls/key.pem", "/etc/mt-agent/tls/cert.pem",
        "/etc/mt-agent/passphrase.key",
    ]

    @Test func helpShowsExamplesAndEveryOption() throws {
        let r = try mtAgent(["setup", "--help"])
        #expect(r.status == 0)
        #expect(r.stdout.contains("Examples:"))
        #expect(r.stdout.contains("mt-agent setup --dry-run"))
        for option in ["--dry-run", "--yes", "--revert", "--root", "--json", "--retention-device", "--format", "--force-format", "--passphrase-file", "--install-packages"] {
            #expect(r.stdout.contains(option), "\(option) missing from --help")
        }
    }

    @Test func applyThenASecondRunHasNothingToDoAndTouchesNothing() throws {
        let machine = try Machine("debian12")
        defer { machine.cleanup() }
        let first = try mtAgent(["setup", "--root", machine.root, "--yes", "--passphrase-file", machine.passphrase])
        #expect(first.status == 0, "\(first.stderr)")
        #expect(first.stdout.contains("  applied     multipath"))
        let lines = first.stdout.split(separator: "\n")
        #expect(lines.last?.hasPrefix("reboot required: yes — multipath: ") == true)
        let before = machine.tree()

        let second = try mtAgent(["setup", "--root", machine.root, "--yes", "--passphrase-file", machine.passphrase])
        #expect(second.status == 0)
        #expect(second.stdout.contains("nothing to do"))
        #expect(second.stdout.split(separator: "\n").last?.hasPrefix("reboot required: yes") == true)
        #expect(machine.tree() == before, "a second run changed files or their mtimes")
    }

    @Test func withoutYesOnANonTerminalItRefusesAndChangesNothing() throws {
        let machine = try Machine("centos7")
        defer { machine.cleanup() }
        let before = machine.tree()
        let r = try mtAgent(["setup", "--root", machine.root])
        #expect(r.status == 2)
        #expect(r.stdout.contains("NEEDED          multipath"), "the plan is printed first")
        let errors = r.stderr.split(separator: "\n")
        #expect(errors.count == 1, "\(r.stderr)")
        #expect(errors.first?.hasPrefix("mt-agent: error: ") == true)
        #expect(r.stderr.contains("pass --yes"))
        #expect(machine.tree() == before)
    }

    @Test func dryRunJSONIsThePlan() throws {
        let machine = try Machine("rhel8")
        defer { machine.cleanup() }
        let before = machine.tree()
        let r = try mtAgent(["setup", "--root", machine.root, "--dry-run", "--json"])
        #expect(r.status == 0, "\(r.stderr)")
        let json = try r.json
        #expect(json["result"] as? String == "planned")
        #expect(json["mode"] as? String == "plan")
        #expect(json["rebootRequired"] as? Bool == false)
        #expect(json.keys.contains("message"), "absent values are null, never missing keys")
        let steps = try #require(json["steps"] as? [[String: Any]])
        #expect(
            steps.map { $0["id"] as? String } == [
                "os", "packages", "multipath", "lvm", "mdadm", "initramfs", "udev", "core-dumps", "config", "tls", "passphrase",
                "retention", "service-unit", "service-enable",
            ])
        #expect(steps.first?["state"] as? String == "done")  // RHEL 8 is supported
        #expect(steps.first { $0["id"] as? String == "multipath" }?["state"] as? String == "needed")
        #expect(steps.last?["state"] as? String == "not-applicable")
        #expect(machine.tree() == before)

        let applied = try mtAgent(["setup", "--root", machine.root, "--yes", "--json", "--passphrase-file", machine.passphrase])
        let result = try applied.json
        #expect(result["result"] as? String == "applied")
        #expect(result["rebootRequired"] as? Bool == true)
        #expect((result["rebootReasons"] as? [String])?.count == 4)
    }

    @Test func badInputIsOneClearLineAndChangesNothing() throws {
        let machine = try Machine("ubuntu2004")
        defer { machine.cleanup() }
        try machine.write("/etc/multipath.conf", "defaults {\n    user_friendly_names yes\n")
        let before = machine.tree()

        let unparsable = try mtAgent(["setup", "--root", machine.root, "--yes", "--passphrase-file", machine.passphrase])
        #expect(unparsable.status == 2)
        #expect(unparsable.stderr == "mt-agent: error: multipath: cannot parse /etc/multipath.conf line 1: section 'defaults' is never closed (missing }); fix the file and run setup again (nothing was changed)\n")

        let device = try mtAgent(["setup", "--root", machine.root, "--yes", "--retention-device", "/dev/sdz"])
        #expect(device.status == 2)
        #expect(device.stderr == "mt-agent: error: --retention-device /dev/sdz does not exist under \(machine.root)\n")

        let passphrase = try mtAgent(["setup", "--root", machine.root, "--yes", "--passphrase-file", machine.dir.path + "/none"])
        #expect(passphrase.status == 2)
        #expect(passphrase.stderr.contains("--passphrase-file \(machine.dir.path)/none does not exist"))

        for (args, message) in [
            (["--format", "btrfs", "--retention-device", "/dev/sda"], "--format must be ext4 or xfs"),
            (["--format", "xfs"], "--format needs --retention-device"),
            (["--retention-device", "/dev/sda", "--format", "xfs", "--force-format", "/dev/sdb"], "--force-format must name the --retention-device"),
            (["--revert", "--install-packages"], "--revert undoes what setup did"),
            (["--dry-run", "--yes"], "--dry-run changes nothing"),
            (["--yes", "--install-packages"], "it cannot install into --root"),
        ] {
            let r = try mtAgent(["setup", "--root", machine.root] + args)
            #expect(r.status != 0)
            #expect(r.stderr.contains(message), "\(args): \(r.stderr)")
        }
        #expect(machine.tree() == before)
    }

    @Test func aLoosePassphraseFileIsRefusedBeforeAnythingChanges() throws {
        let machine = try Machine("centos7")
        defer { machine.cleanup() }
        let before = machine.tree()
        let loose = machine.dir.appendingPathComponent("loose").path
        FileManager.default.createFile(atPath: loose, contents: Data("secret\n".utf8), attributes: [.posixPermissions: 0o644])
        let looseRun = try mtAgent(["setup", "--root", machine.root, "--yes", "--passphrase-file", loose])
        #expect(looseRun.status == 1)
        #expect(looseRun.stderr == "mt-agent: error: passphrase is blocked: passphrase file \(loose) is readable by group/others (mode 0644); chmod 600 \(loose); nothing was changed\n")

        #expect(machine.tree() == before, "a blocked plan changed files")
    }

    @Test func revertRestoresEveryFileByteForByte() throws {
        let machine = try Machine("centos7")
        defer { machine.cleanup() }
        let original = machine.tree()
        #expect(try mtAgent(["setup", "--root", machine.root, "--yes", "--passphrase-file", machine.passphrase]).status == 0)
        let r = try mtAgent(["setup", "--root", machine.root, "--revert", "--yes"])
        #expect(r.status == 0, "\(r.stderr)")
        #expect(r.stdout.contains("restore  /etc/multipath.conf"))
        #expect(r.stdout.contains("remove   /etc/udev/rules.d/69-mt-agent.rules"))
        let reverted = machine.tree(excluding: ["/var"])
        #expect(reverted == original, "differs: \(Set(reverted.keys).symmetricDifference(original.keys)) \(reverted.filter { original[$0.key] != $0.value }.keys)")
        let again = try mtAgent(["setup", "--root", machine.root, "--revert", "--yes"])
        #expect(again.stdout.contains("nothing to revert"))
    }

    /// kill -9 of the binary at points inside and between steps (the process kills itself at
    /// the failpoint), then a second run: the machine ends as after one uninterrupted run.
    @Test func killedMidRunAndRunAgainEndsLikeAnUninterruptedRun() throws {
        let reference = try Machine("debian12")
        defer { reference.cleanup() }
        #expect(try mtAgent(["setup", "--root", reference.root, "--yes", "--passphrase-file", reference.passphrase]).status == 0)
        let expectedTree = reference.tree(excluding: ownFiles, times: false)
        let expectedState = try reference.state()

        for point in [
            "before-apply:multipath", "backup:/etc/multipath.conf", "temp:/etc/multipath.conf", "after-apply:multipath",
            "renamed:/etc/lvm/lvm.conf", "after-state:lvm", "temp:/etc/mdadm/mdadm.conf",
            "backup:/etc/udev/rules.d/69-mt-agent.rules", "renamed:/etc/systemd/system/mt-agent.service.d/50-core-dumps.conf",
            "after-apply:service-unit",
        ] {
            let machine = try Machine("debian12")
            defer { machine.cleanup() }
            let (process, _, _) = try Self.start(["setup", "--root", machine.root, "--yes", "--passphrase-file", machine.passphrase], environment: ["MT_AGENT_FAILPOINT": point])
            process.waitUntilExit()
            #expect(process.terminationReason == .uncaughtSignal && process.terminationStatus == SIGKILL, "\(point): not killed")

            let rerun = try mtAgent(["setup", "--root", machine.root, "--yes", "--passphrase-file", machine.passphrase])
            #expect(rerun.status == 0, "\(point): \(rerun.stderr)")
            #expect(machine.tree(excluding: ownFiles, times: false) == expectedTree, "\(point)")
            let state = try machine.state()
            #expect(state == expectedState, "\(point): \(state.filter { !expectedState.contains($0) }) vs \(expectedState.filter { !state.contains($0) })")
            #expect(try mtAgent(["setup", "--root", machine.root, "--yes", "--passphrase-file", machine.passphrase]).stdout.contains("nothing to do"), "\(point)")
        }
    }

    /// A kill -9 from outside: the binary stops itself in the middle of replacing lvm.conf (new
    /// content staged, not yet renamed) and this test kills it there.
    @Test func killedFromOutsideWhileReplacingAFile() throws {
        let reference = try Machine("rhel8")
        defer { reference.cleanup() }
        #expect(try mtAgent(["setup", "--root", reference.root, "--yes", "--passphrase-file", reference.passphrase]).status == 0)

        let machine = try Machine("rhel8")
        defer { machine.cleanup() }
        let (process, _, _) = try Self.start(
            ["setup", "--root", machine.root, "--yes", "--passphrase-file", machine.passphrase], environment: ["MT_AGENT_FAILPOINT": "temp:/etc/lvm/lvm.conf=stop"])
        let pid = process.processIdentifier
        var stopped = false
        for _ in 0..<200 where !stopped {
            let stat = (try? String(contentsOfFile: "/proc/\(pid)/stat", encoding: .utf8)) ?? ""
            stopped = stat.split(separator: ")").last?.split(separator: " ").first == "T"
            if !stopped { usleep(50_000) }
        }
        #expect(stopped, "the binary never reached the failpoint")
        #expect(FileManager.default.fileExists(atPath: machine.root + "/etc/lvm/.lvm.conf.mt-agent-tmp"), "stopped mid-write")
        kill(pid, SIGKILL)
        process.waitUntilExit()
        #expect(process.terminationReason == .uncaughtSignal && process.terminationStatus == SIGKILL)

        let rerun = try mtAgent(["setup", "--root", machine.root, "--yes", "--passphrase-file", machine.passphrase])
        #expect(rerun.status == 0, "\(rerun.stderr)")
        #expect(!FileManager.default.fileExists(atPath: machine.root + "/etc/lvm/.lvm.conf.mt-agent-tmp"))
        #expect(machine.tree(excluding: ownFiles, times: false) == reference.tree(excluding: ownFiles, times: false))
        #expect(try machine.state() == reference.state())
    }
}
