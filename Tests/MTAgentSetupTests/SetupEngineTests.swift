import FoundationEssentials
import Glibc
import MTAgentCore
import MTAgentLinux
import Testing

@testable import MTAgentSetup

/// Setup's own files, left out when a machine's tree is compared before and after.
let setupOwnFiles = ["/var/lib/mt-agent", "/var/log/mt-agent"]

@Suite("setup engine on fixture machines", .tags(.medium), .serialized)
struct SetupEngineTests {
    /// plan → apply → every file setup wrote equals its golden copy, byte for byte, and setup
    /// wrote no other file.
    @Test(arguments: setupDistributions)
    func applyWritesTheGoldenFiles(_ distribution: String) throws {
        let machine = try SetupScratchRoot(distribution)
        defer { machine.cleanup() }
        let engine = try setupEngine(machine.root)
        let plan = try engine.plan()
        #expect(plan.result == .planned)
        #expect(plan.steps.map(\.id) == SetupPlan.systemSteps(options: SetupOptions()).map(\.id))

        let report = try engine.apply()
        #expect(report.result == .applied, "\(report.message ?? "")")
        #expect(report.rebootRequired)
        #expect(report.rebootReasons.contains { $0.hasPrefix("multipath: ") })

        let written = try machine.state().backups.filter { $0.kind != .directory }.map(\.path).sorted()
        let goldenRoot = setupFixtures + "/" + distribution + ".golden"
        if updateGolden {
            try sh("rm", "-rf", goldenRoot)
            for path in written {
                try HostFile.makeDirectories(HostFile.dirname(goldenRoot + path))
                try HostFile.write(goldenRoot + path, try HostFile.read(machine.host(path)), mode: 0o644)
            }
        }
        let golden = TreeSnapshot(root: goldenRoot, excluding: [], withTimes: false).entries.filter { $0.value.kind == "file" }
        #expect(golden.keys.sorted() == written, "setup wrote other files than the golden ones")
        for path in written {
            let actual = try HostFile.read(machine.host(path))
            #expect(actual == golden[path]?.content, "\(path) differs from \(goldenRoot)\(path); MT_AGENT_UPDATE_GOLDEN=1 regenerates")
        }
        // The admin's files keep their mode; new files are 0644.
        for path in written { #expect(HostFile.info(machine.host(path))?.mode == 0o644) }
    }

    @Test(arguments: setupDistributions)
    func aSecondRunChangesNothing(_ distribution: String) throws {
        let machine = try SetupScratchRoot(distribution)
        defer { machine.cleanup() }
        #expect(try setupEngine(machine.root).apply().result == .applied)
        let before = machine.snapshot()

        let second = try setupEngine(machine.root)
        let plan = try second.plan()
        #expect(plan.result == .nothingToDo)
        #expect(plan.steps.allSatisfy { $0.state == .done || $0.state == .notApplicable })
        let report = try second.apply()
        #expect(report.result == .nothingToDo)
        #expect(report.rebootRequired, "the reboot asked for by the first run has not happened")
        let after = machine.snapshot()
        #expect(before == after, "changed: \(before.differences(after))")
    }

    @Test(arguments: setupDistributions)
    func revertRestoresEveryFileByteForByte(_ distribution: String) throws {
        let machine = try SetupScratchRoot(distribution)
        defer { machine.cleanup() }
        let original = machine.snapshot()
        #expect(try setupEngine(machine.root).apply().result == .applied)
        #expect(machine.snapshot(excluding: setupOwnFiles) != original)

        let report = try setupEngine(machine.root).revert()
        #expect(report.result == .reverted)
        let reverted = machine.snapshot(excluding: ["/var"])
        // Bytes, modes and mtimes: exactly the tree before setup; the files it added are gone.
        #expect(reverted == original, "differs: \(original.differences(reverted))")
        #expect(!HostFile.exists(machine.host(SetupPaths.state)))
        #expect(!HostFile.exists(machine.host(SetupPaths.backups)))
        #expect(machine.text(SetupPaths.log)?.contains("setup revert ended") == true)

        #expect(try setupEngine(machine.root).revert().result == .nothingToRevert)
        #expect(try setupEngine(machine.root).plan().result == .planned, "after a revert, setup has work to do again")
    }

    @Test func theLogHasATimestampedLineForEveryAction() throws {
        let machine = try SetupScratchRoot("rhel8")
        defer { machine.cleanup() }
        _ = try setupEngine(machine.root).apply()
        let log = try #require(machine.text(SetupPaths.log))
        let lines = log.split(separator: "\n")
        #expect(lines.allSatisfy { $0.hasPrefix("2023-11-14T22:13:20.000Z ") })
        #expect(lines.contains { $0.contains("[multipath] backed up") && $0.contains("file=/etc/multipath.conf") })
        #expect(lines.contains { $0.contains("[multipath] replaced file") })
        #expect(lines.contains { $0.contains("[udev] created file file=/etc/udev/rules.d/69-mt-agent.rules") })
        #expect(lines.contains { $0.contains("[service-unit] applied") })
        #expect(lines.last?.contains("setup run ended") == true)
    }

    @Test func dryRunPlanAndNothingToDoWriteNothing() throws {
        let machine = try SetupScratchRoot("debian12")
        defer { machine.cleanup() }
        let before = machine.snapshot()
        _ = try setupEngine(machine.root).plan()
        _ = try setupEngine(machine.root).revertPlan()
        #expect(try setupEngine(machine.root).revert().result == .nothingToRevert)
        #expect(machine.snapshot() == before)
    }

    /// The reboot setup asks for is recorded with the boot; after a reboot it is no longer asked.
    @Test func rebootIsNoLongerRequiredAfterTheBootChanges() throws {
        let machine = try SetupScratchRoot("ubuntu2004")
        defer { machine.cleanup() }
        try machine.put(SetupPaths.bootID, "1b2f0c6e-0000-4000-8000-000000000001\n")
        #expect(try setupEngine(machine.root).apply().rebootRequired)
        #expect(try machine.state().bootID == "1b2f0c6e-0000-4000-8000-000000000001")
        #expect(try setupEngine(machine.root).plan().rebootRequired)
        try machine.put(SetupPaths.bootID, "1b2f0c6e-0000-4000-8000-000000000002\n")
        let plan = try setupEngine(machine.root).plan()
        #expect(plan.result == .nothingToDo)
        #expect(!plan.rebootRequired)
    }

    @Test func anotherRunHoldingTheLockIsRefused() throws {
        let machine = try SetupScratchRoot("debian12")
        defer { machine.cleanup() }
        let held = try SetupRunLock(path: machine.host(SetupPaths.lock))
        defer { held.release() }
        #expect(throws: SetupError.busy(lock: machine.host(SetupPaths.lock))) { try setupEngine(machine.root).apply() }
    }

    @Test func aCorruptStateFileIsOneClearError() throws {
        let machine = try SetupScratchRoot("debian12")
        defer { machine.cleanup() }
        try machine.put(SetupPaths.state, "{ not json")
        let error = try #require(throws: SetupError.self) { try setupEngine(machine.root).plan() }
        #expect("\(error)".contains("state file"))
        #expect("\(error)".contains("move it away"))
    }
}

@Suite("setup refuses bad input and changes nothing", .tags(.medium), .serialized)
struct SetupBadInputTests {
    @Test func anUnparsableMultipathConfStopsBeforeAnyChange() throws {
        let machine = try SetupScratchRoot("rhel8")
        defer { machine.cleanup() }
        try machine.put("/etc/multipath.conf", "defaults {\n\tuser_friendly_names yes\n\n# the admin forgot the brace\nblacklist {\n\twwid \"x\"\n}\n")
        let before = machine.snapshot()
        let report = try setupEngine(machine.root).apply()
        #expect(report.result == .failed)
        #expect(report.exitCode == 2)
        let message = try #require(report.message)
        #expect(message == "multipath: cannot parse /etc/multipath.conf line 1: section 'defaults' is never closed (missing }); fix the file and run setup again (nothing was changed)")
        #expect(machine.snapshot() == before, "changed: \(before.differences(machine.snapshot()))")
    }

    @Test func anUnbalancedBraceInLVMConfNamesItsLine() throws {
        let machine = try SetupScratchRoot("centos7")
        defer { machine.cleanup() }
        try machine.put("/etc/lvm/lvm.conf", "devices {\n\tdir = \"/dev\"\n}\n}\n")
        let before = machine.snapshot()
        let report = try setupEngine(machine.root).apply()
        #expect(report.result == .failed)
        #expect(report.message?.contains("/etc/lvm/lvm.conf line 4: '}' without a matching '{'") == true)
        #expect(machine.snapshot() == before)
    }

    @Test func anUnreadableConfigIsOneClearError() throws {
        let machine = try SetupScratchRoot("debian12")
        defer { machine.cleanup() }
        // A directory where the file should be: exists, but cannot be read as a file.
        try HostFile.makeDirectories(machine.host("/etc/multipath.conf"))
        let before = machine.snapshot()
        let report = try setupEngine(machine.root).apply()
        #expect(report.result == .failed)
        #expect(report.message == "multipath: cannot read /etc/multipath.conf; fix its permissions and run setup again (nothing was changed)")
        #expect(machine.snapshot() == before)
    }

    /// The root disk without a WWID (VMware's disk.EnableUUID off): blocked, pointing at the check.
    @Test func aRootDiskWithoutIdentityBlocksMultipathAndLVM() throws {
        let machine = try SetupScratchRoot("debian12")
        defer { machine.cleanup() }
        // The PVSCSI capture, whose sdc has no identity, with / on sdc.
        try sh("rm", "-rf", machine.host("/sys"), machine.host("/proc"))
        try sh("cp", "-a", setupFixtures + "/../vmware-pvscsi/sys", setupFixtures + "/../vmware-pvscsi/proc", machine.root)
        let mountinfo = try #require(RootedFiles(root: machine.root).resolve("/proc/self/mountinfo"))
        try machine.put(mountinfo, "1 0 8:32 / / rw,relatime - ext4 /dev/sdc rw\n22 1 0:20 / /proc rw - proc proc rw\n")
        let before = machine.snapshot()
        let engine = try setupEngine(machine.root)
        let plan = try engine.plan()
        let multipath = try #require(plan.steps.first { $0.id == "multipath" })
        #expect(multipath.state == .blocked)
        #expect(multipath.detail?.contains("mt-agent check enable-uuid") == true)
        #expect(multipath.detail?.contains("system disk sdc (0:0:2:0) has no WWID") == true)
        #expect(plan.steps.first { $0.id == "lvm" }?.state == .blocked)

        let report = try engine.apply()
        #expect(report.result == .stopped)
        #expect(report.exitCode == 1)
        #expect(report.message?.hasPrefix("multipath is blocked: system disk sdc") == true)
        #expect(report.steps.filter { $0.action == .notReached }.map(\.id) == ["mdadm", "udev", "core-dumps", "service-unit"])
        // Only setup's log and state directory: multipath is the first step, nothing else may change.
        #expect(machine.snapshot(excluding: ["/var"]) == before.filter { !$0.hasPrefix("/var") })
    }

    @Test func aStepThatFailsStopsTheRunAndTheRestIsNotReached() throws {
        let machine = try SetupScratchRoot("centos7")
        defer { machine.cleanup() }
        struct Failing: SetupStep {
            let id = "failing"
            let title = "A step whose apply fails"
            func check(_ context: SetupContext) throws -> StepState { .needed("always") }
            func apply(_ context: SetupContext) throws -> StepOutcome { throw SetupTestError("disk full") }
        }
        let steps: [SetupStep] = [CoreDumpStep(), Failing(), UdevRulesStep()]
        let report = try setupEngine(machine.root, steps: steps).apply()
        #expect(report.result == .failed)
        #expect(report.message == "failing failed: disk full")
        #expect(report.steps.map { $0.action } == [.applied, .failed, .notReached])
        #expect(!HostFile.exists(machine.host(UdevRulesStep.path)))
    }

    @Test func verificationFailsWhenAStepIsNotDoneAfterApplying() throws {
        let machine = try SetupScratchRoot("centos7")
        defer { machine.cleanup() }
        struct Forgetful: SetupStep {
            let id = "forgetful"
            let title = "A step whose apply does nothing"
            func check(_ context: SetupContext) throws -> StepState { .needed("write /etc/nothing") }
            func apply(_ context: SetupContext) throws -> StepOutcome { StepOutcome(summary: "did nothing") }
        }
        let report = try setupEngine(machine.root, steps: [Forgetful()]).apply()
        #expect(report.result == .failed)
        #expect(report.message == "verification failed: forgetful is still not done after applying it: write /etc/nothing")
    }
}
