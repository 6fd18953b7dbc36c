import FoundationEssentials
import Glibc
import MTAgentCore
import MTAgentLinux
import Testing

@testable import MTAgentSetup

/// A run stopped at any point (a failpoint throws where a kill -9 would end the process: the
/// engine writes nothing more) and run again ends exactly where an uninterrupted run ends.
/// The end-to-end tests do the same with real kill -9s of the binary.
@Suite("setup interrupted anywhere and run again", .tags(.medium), .serialized)
struct SetupInterruptionTests {
    /// Everything but setup's log, without mtimes (the runs write at different times), and the
    /// state decoded: its step summaries say which run made a change.
    struct Outcome: Equatable {
        var tree: TreeSnapshot
        var steps: [String]
        var backups: [BackupEntry]
        var reboot: [SetupState.RebootReason]
    }

    static func outcome(_ machine: SetupScratchRoot) throws -> Outcome {
        let state = try machine.state()
        return Outcome(
            tree: machine.snapshot(excluding: ["/var/log/mt-agent", SetupPaths.state]).withoutTimes(),
            steps: state.steps.map { "\($0.id):\($0.status.rawValue):\($0.outcome?.rebootReason ?? "-")" },
            backups: state.backups, reboot: state.reboot)
    }

    @Test(arguments: setupDistributions)
    func applyKilledAtEveryPointThenRunAgain(_ distribution: String) throws {
        let reference = try SetupScratchRoot(distribution)
        defer { reference.cleanup() }
        let recorder = FailpointRecorder()
        #expect(try setupEngine(reference.root, failpoint: recorder.failpoint).apply().result == .applied)
        let expected = try Self.outcome(reference)
        let points = recorder.points
        // Every step, before and after its change and its record, and every file inside a write.
        #expect(points.contains("after-apply:multipath"))
        #expect(points.contains("temp:/etc/lvm/lvm.conf"))
        #expect(points.contains("renamed:/etc/udev/rules.d/69-mt-agent.rules"))
        #expect(points.contains("backup:/etc/systemd/system/mt-agent.service"))

        for point in points {
            let machine = try SetupScratchRoot(distribution)
            defer { machine.cleanup() }
            let crash = Failpoint { if $0 == point { throw SimulatedCrash(point: $0) } }
            #expect(throws: SimulatedCrash(point: point)) { try setupEngine(machine.root, failpoint: crash).apply() }

            let rerun = try setupEngine(machine.root).apply()
            // After the last step's record, nothing is left to do.
            #expect(rerun.result == .applied || rerun.result == .nothingToDo, "after a crash at \(point): \(rerun.message ?? "")")
            let got = try Self.outcome(machine)
            #expect(got == expected, "crash at \(point): \(expected.tree.differences(got.tree)) \(got.steps) vs \(expected.steps)")
            #expect(try setupEngine(machine.root).plan().result == .nothingToDo, "crash at \(point)")
        }
    }

    /// A crash after the change but before the state says so: the re-run finds the step done,
    /// records it (with its reboot reason), and does not apply it again.
    @Test func aChangeMadeButNotRecordedIsRecordedWithItsRebootReason() throws {
        let machine = try SetupScratchRoot("centos7")
        defer { machine.cleanup() }
        let crash = Failpoint { if $0 == "after-apply:multipath" { throw SimulatedCrash(point: $0) } }
        #expect(throws: SimulatedCrash.self) { try setupEngine(machine.root, failpoint: crash).apply() }
        #expect(try machine.state().record("multipath")?.status == .applying)

        let plan = try setupEngine(machine.root).plan()
        #expect(plan.result == .planned)
        #expect(plan.steps.first?.state == .done)
        let report = try setupEngine(machine.root).apply()
        #expect(report.steps.first?.action == .completed)
        #expect(report.rebootReasons.first == "multipath: " + MultipathStep().rebootReason!)
        #expect(try machine.state().record("multipath")?.status == .applied)
    }

    /// Only the last step's record was missing: the re-run has nothing to change but still
    /// records it, so the state matches an uninterrupted run.
    @Test func aRunKilledAfterItsLastChangeIsFinishedByTheNextRun() throws {
        let machine = try SetupScratchRoot("debian12")
        defer { machine.cleanup() }
        let crash = Failpoint { if $0 == "after-apply:service-unit" { throw SimulatedCrash(point: $0) } }
        #expect(throws: SimulatedCrash.self) { try setupEngine(machine.root, failpoint: crash).apply() }
        let plan = try setupEngine(machine.root).plan()
        #expect(plan.steps.allSatisfy { $0.state != .needed })
        #expect(plan.result == .planned, "the unrecorded step is still to do")
        #expect(try setupEngine(machine.root).apply().result == .applied)
        #expect(try setupEngine(machine.root).plan().result == .nothingToDo)
    }

    @Test(arguments: ["centos7", "ubuntu2004"])
    func revertKilledAtEveryPointThenRunAgain(_ distribution: String) throws {
        let pristine = try SetupScratchRoot(distribution)
        defer { pristine.cleanup() }
        let original = pristine.snapshot()
        let recorder = FailpointRecorder()
        #expect(try setupEngine(pristine.root).apply().result == .applied)
        #expect(try setupEngine(pristine.root, failpoint: recorder.failpoint).revert().result == .reverted)
        let points = recorder.points
        #expect(points.contains("before-revert:multipath"))
        #expect(points.contains("restored:/etc/lvm/lvm.conf"))

        for point in points {
            let machine = try SetupScratchRoot(distribution)
            defer { machine.cleanup() }
            #expect(try setupEngine(machine.root).apply().result == .applied)
            let crash = Failpoint { if $0 == point { throw SimulatedCrash(point: $0) } }
            #expect(throws: SimulatedCrash(point: point)) { try setupEngine(machine.root, failpoint: crash).revert() }
            #expect(try setupEngine(machine.root).revert().result == .reverted, "crash at \(point)")
            let reverted = machine.snapshot(excluding: ["/var"])
            #expect(reverted == original, "crash at \(point): \(original.differences(reverted))")
        }
    }
}
