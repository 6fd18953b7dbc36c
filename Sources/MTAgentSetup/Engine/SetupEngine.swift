import Glibc
import Logging
import MTAgentCore
import MTAgentLinux

/// Runs the steps: plan (check every step), apply the needed ones in order, verify them, and
/// revert. The state file and the backups make every run resumable: a run killed anywhere is
/// finished by running setup again, because steps are idempotent and every change is backed up
/// and recorded before it is made.
public struct SetupEngine: Sendable {
    public let root: String
    public let steps: [SetupStep]
    let system: SystemFiles
    let runner: CommandRunning
    let inventory: Inventory
    let options: SetupOptions
    let logger: Logger
    let systemdRunning: Bool
    let clock: SetupClock
    let failpoint: Failpoint

    public init(
        root: String, steps: [SetupStep], system: SystemFiles, runner: CommandRunning, inventory: Inventory,
        options: SetupOptions, logger: Logger, systemdRunning: Bool, clock: SetupClock = SystemClock(),
        failpoint: Failpoint = .none
    ) {
        self.root = Paths.normalize(root)
        self.steps = steps
        self.system = system
        self.runner = runner
        self.inventory = inventory
        self.options = options
        self.logger = logger
        self.systemdRunning = systemdRunning
        self.clock = clock
        self.failpoint = failpoint
    }

    var logPath: String { host(SetupPaths.log) }

    func host(_ path: String) -> String { root == "/" ? path : root + path }

    private func context(_ files: SetupFileSystem, _ logger: Logger) -> SetupContext {
        SetupContext(
            files: files, system: system, runner: runner, inventory: inventory, options: options, logger: logger,
            systemdRunning: systemdRunning)
    }

    private var currentBootID: String? { system.text(SetupPaths.bootID) }

    // MARK: Plan

    /// Checks every step; changes nothing.
    public func plan() throws -> SetupReport {
        let store = try SetupStateStore(root: root)
        let files = RootedSetupFiles(root: root, store: store, failpoint: .none, logger: logger)
        var reports: [StepReport] = []
        var firstError: String?
        var pending = 0
        for step in steps {
            var stepLogger = logger
            stepLogger[metadataKey: "setup.step"] = "\(step.id)"
            do {
                let state = try step.check(context(files, stepLogger))
                var report = StepReport(step, state)
                if state == .done, store.state.record(step.id)?.status == .applying {
                    report.detail = "made by a run that was interrupted; this run records it"
                    pending += 1
                }
                reports.append(report)
            } catch {
                reports.append(StepReport(id: step.id, title: step.title, state: .error, detail: "\(error)"))
                firstError = firstError ?? "\(step.id): \(error)"
            }
        }
        let reboot = store.state.pendingReboot(currentBootID: currentBootID)
        let toDo = pending + reports.filter { $0.state == .needed }.count
        return SetupReport(
            root: root, mode: .plan,
            result: firstError != nil ? .failed : toDo == 0 ? .nothingToDo : .planned,
            message: firstError, steps: reports, rebootRequired: !reboot.isEmpty,
            rebootReasons: reboot.map { "\($0.step): \($0.reason)" })
    }

    // MARK: Apply

    /// Applies every needed step in order, stopping at a failure, then verifies what it applied.
    /// A plan with a failed check or a blocked step changes nothing: the admin fixes what the
    /// plan says (a loose passphrase file, a missing tool, a disk without identity) and runs
    /// setup again, rather than being left with half a master target.
    public func apply() throws -> SetupReport {
        var report = try plan()
        report.mode = .apply
        guard report.result != .failed else { return report }
        if let blocked = report.steps.first(where: { $0.state == .blocked }) {
            report.result = .stopped
            report.message = "\(blocked.id) is blocked: \(blocked.detail ?? "see the plan"); nothing was changed"
            for j in report.steps.indices where report.steps[j].state == .needed { report.steps[j].action = .notReached }
            return report
        }
        guard report.result == .planned else { return report }

        let lock = try SetupRunLock(path: host(SetupPaths.lock))
        defer { lock.release() }
        let store = try SetupStateStore(root: root)
        let logFile = SetupLogFile(path: logPath, clock: clock)
        defer { logFile.sync() }
        let fileLogger = Logger(label: logger.label) { _ in
            MultiplexLogHandler([logger.handler, SetupLogHandler(file: logFile)])
        }
        let files = RootedSetupFiles(root: root, store: store, failpoint: failpoint, logger: fileLogger)
        let bootID = currentBootID
        report.log = logPath
        fileLogger.info(
            "setup run started", metadata: ["setup.root": "\(root)", "setup.steps": "\(report.steps.filter { $0.state == .needed }.count)"])

        var applied: [Int] = []
        var stop: (SetupReport.Result, String)?
        for (i, step) in steps.enumerated() {
            var stepLogger = fileLogger
            stepLogger[metadataKey: "setup.step"] = "\(step.id)"
            files.attribute(to: step.id, logger: stepLogger)
            let ctx = context(files, stepLogger)

            // Checked again: an earlier step may have changed what this one finds.
            let state: StepState
            do {
                state = try step.check(ctx)
            } catch {
                report.steps[i] = StepReport(id: step.id, title: step.title, state: .error, detail: "\(error)")
                stop = (.failed, "\(step.id): \(error)")
                break
            }
            let previous = report.steps[i]
            report.steps[i] = StepReport(step, state)
            if previous.detail != nil && state == .done { report.steps[i].detail = previous.detail }

            switch state {
            case .done:
                guard store.state.record(step.id)?.status == .applying else { continue }
                let outcome = StepOutcome(
                    summary: "made by a run that was interrupted; recorded now", rebootReason: step.rebootReason)
                try store.update { self.recordApplied(step.id, outcome, bootID: bootID, in: &$0) }
                stepLogger.info("step was applied by an interrupted run; recorded")
                report.steps[i].action = .completed
                report.steps[i].summary = outcome.summary
                applied.append(i)
            case .notApplicable:
                continue
            case .blocked(let why):
                stepLogger.notice("step is blocked; setup stops here", metadata: ["setup.reason": "\(why)"])
                stop = (.stopped, "\(step.id) is blocked: \(why)")
            case .needed(let what):
                stepLogger.info("applying", metadata: ["setup.change": "\(what)"])
                try store.update {
                    self.forgetRebootOfEarlierBoot(&$0, bootID: bootID)
                    $0.setRecord(.init(id: step.id, status: .applying, outcome: nil))
                }
                try failpoint.hit("before-apply:\(step.id)")
                let outcome: StepOutcome
                do {
                    outcome = try step.apply(ctx)
                } catch let crash as SimulatedCrash {
                    throw crash
                } catch {
                    stepLogger.error("step failed", metadata: ["error": "\(error)"])
                    report.steps[i].action = .failed
                    stop = (.failed, "\(step.id) failed: \(error)")
                    break
                }
                try failpoint.hit("after-apply:\(step.id)")
                try store.update { self.recordApplied(step.id, outcome, bootID: bootID, in: &$0) }
                try failpoint.hit("after-state:\(step.id)")
                stepLogger.info("applied", metadata: ["setup.summary": "\(outcome.summary)"])
                report.steps[i].action = .applied
                report.steps[i].summary = outcome.summary
                report.notes += outcome.notes
                applied.append(i)
            }
            if stop != nil {
                for j in (i + 1)..<steps.count where report.steps[j].state == .needed {
                    report.steps[j].action = .notReached
                }
                break
            }
        }

        // Verify: everything applied must now check as done.
        if stop == nil || stop?.0 == .stopped {
            for i in applied {
                let step = steps[i]
                var stepLogger = fileLogger
                stepLogger[metadataKey: "setup.step"] = "\(step.id)"
                files.attribute(to: step.id, logger: stepLogger)
                let state = try? step.check(context(files, stepLogger))
                if state != .done {
                    let what: String
                    switch state {
                    case .needed(let s), .blocked(let s), .notApplicable(let s): what = s
                    default: what = "its check failed"
                    }
                    stepLogger.error("verification failed", metadata: ["setup.state": "\(what)"])
                    stop = (.failed, "verification failed: \(step.id) is still not done after applying it: \(what)")
                    break
                }
            }
        }

        report.result = stop?.0 ?? .applied
        report.message = stop?.1
        let reboot = store.state.pendingReboot(currentBootID: bootID)
        report.rebootRequired = !reboot.isEmpty
        report.rebootReasons = reboot.map { "\($0.step): \($0.reason)" }
        fileLogger.log(
            level: stop == nil ? .info : .notice, "setup run ended",
            metadata: ["setup.result": "\(report.result.rawValue)", "setup.reboot": "\(report.rebootRequired ? "yes" : "no")"]
                .merging(stop.map { ["setup.reason": "\($0.1)"] } ?? [:]) { a, _ in a })
        return report
    }

    private func recordApplied(_ id: String, _ outcome: StepOutcome, bootID: String?, in state: inout SetupState) {
        forgetRebootOfEarlierBoot(&state, bootID: bootID)
        state.setRecord(.init(id: id, status: .applied, outcome: outcome))
        state.reboot.removeAll { $0.step == id }
        if let reason = outcome.rebootReason {
            state.reboot.append(.init(step: id, reason: reason))
        }
        state.bootID = bootID
    }

    /// Reasons recorded in an earlier boot were satisfied by the reboot since.
    private func forgetRebootOfEarlierBoot(_ state: inout SetupState, bootID: String?) {
        if state.bootID != bootID {
            state.reboot = []
            state.bootID = bootID
        }
    }

    // MARK: Revert

    /// What `--revert` would do; changes nothing.
    public func revertPlan() throws -> SetupReport {
        let store = try SetupStateStore(root: root)
        let state = store.state
        guard store.existed else {
            return SetupReport(root: root, mode: .revert, result: .nothingToRevert, steps: [])
        }
        return SetupReport(
            root: root, mode: .plan, result: .planned, steps: revertedSteps(state).map { step in
                StepReport(id: step.id, title: step.title, state: .done, detail: "revert")
            }, files: state.backups.reversed())
    }

    /// Undoes every step setup applied, in reverse order, and restores every file it changed byte
    /// for byte (and removes those it created); then forgets the state. Safe to run again after
    /// being killed: nothing is forgotten until everything is back.
    public func revert() throws -> SetupReport {
        let lock = try SetupRunLock.ifSetupRan(path: host(SetupPaths.lock))
        defer { lock?.release() }
        let store = try SetupStateStore(root: root)
        guard store.existed else {
            return SetupReport(root: root, mode: .revert, result: .nothingToRevert, steps: [])
        }
        let state = store.state
        let logFile = SetupLogFile(path: logPath, clock: clock)
        defer { logFile.sync() }
        let fileLogger = Logger(label: logger.label) { _ in
            MultiplexLogHandler([logger.handler, SetupLogHandler(file: logFile)])
        }
        let files = RootedSetupFiles(root: root, store: store, failpoint: failpoint, logger: fileLogger)
        fileLogger.info("setup revert started", metadata: ["setup.root": "\(root)"])

        var reports: [StepReport] = []
        var restored = Set<String>()
        func restore(_ entries: [BackupEntry]) throws {
            for entry in entries.reversed() where entry.kind != .directory && !restored.contains(entry.path) {
                try files.restore(entry)
                restored.insert(entry.path)
            }
        }
        let reverted = revertedSteps(state)
        for step in reverted {
            var stepLogger = fileLogger
            stepLogger[metadataKey: "setup.step"] = "\(step.id)"
            files.attribute(to: step.id, logger: stepLogger)
            try failpoint.hit("before-revert:\(step.id)")
            if state.record(step.id) != nil {
                do {
                    try step.revert(context(files, stepLogger))
                } catch let crash as SimulatedCrash {
                    throw crash
                } catch {
                    stepLogger.error("revert failed", metadata: ["error": "\(error)"])
                    var report = StepReport(id: step.id, title: step.title, state: .error, detail: "\(error)")
                    report.action = .failed
                    return SetupReport(
                        root: root, mode: .revert, result: .failed, message: "\(step.id): revert failed: \(error)",
                        steps: reports + [report], log: logPath)
                }
            }
            try restore(state.backups.filter { $0.step == step.id })
            stepLogger.info("reverted")
            var report = StepReport(id: step.id, title: step.title, state: .done)
            report.action = .reverted
            reports.append(report)
        }
        // Files of steps this binary no longer has: restored all the same.
        try restore(state.backups)
        for entry in state.backups.reversed() where entry.kind == .directory {
            files.removeCreatedDirectory(entry)
        }
        for step in reverted where state.record(step.id) != nil {
            var stepLogger = fileLogger
            stepLogger[metadataKey: "setup.step"] = "\(step.id)"
            try step.afterRevert(context(files, stepLogger))
        }
        try store.clear()
        fileLogger.info("setup revert ended; state cleared", metadata: ["setup.files": "\(state.backups.count)"])
        let hadReboot = !state.reboot.isEmpty
        return SetupReport(
            root: root, mode: .revert, result: .reverted, steps: reports, files: state.backups.reversed(),
            rebootRequired: hadReboot,
            rebootReasons: hadReboot ? ["revert: the restored configuration takes full effect at the next boot"] : [],
            log: logPath)
    }

    /// Steps with something to undo, last applied first.
    private func revertedSteps(_ state: SetupState) -> [SetupStep] {
        steps.reversed().filter { step in
            state.record(step.id) != nil || state.backups.contains { $0.step == step.id }
        }
    }
}

/// One setup at a time per machine: an exclusive flock on `var/lib/mt-agent/setup/lock`.
final class SetupRunLock: Sendable {
    private let lock: FileLock

    init(path: String) throws {
        try HostFile.makeDirectories(HostFile.dirname(path), mode: 0o700)
        let taken: FileLock?
        do { taken = try FileLock.tryExclusive(path: path) } catch let error as FileLockError {
            throw SetupIOError("open", path, error.errno)
        }
        guard let taken else { throw SetupError.busy(lock: path) }
        lock = taken
    }

    func release() { lock.release() }
}

extension SetupRunLock {
    /// The lock for `--revert`, which must not create setup's directory on a machine without one.
    static func ifSetupRan(path: String) throws -> SetupRunLock? {
        HostFile.exists(HostFile.dirname(path)) ? try SetupRunLock(path: path) : nil
    }
}
