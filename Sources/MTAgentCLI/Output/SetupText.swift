import MTAgentSetup

/// The text form of a setup report: the plan, what was applied, and the reboot verdict last.
enum SetupText {
    static func plan(_ report: SetupReport) -> String {
        var out = "setup plan for \(report.root):\n"
        let width = (report.steps.map(\.id.count).max() ?? 0) + 2
        for step in report.steps {
            out += "  " + pad(label(step.state), 16) + pad(step.id, width) + step.title + "\n"
            if let detail = step.detail { out += "  " + String(repeating: " ", count: 16 + width) + detail + "\n" }
        }
        return out
    }

    static func revertPlan(_ report: SetupReport) -> String {
        var out = "revert plan for \(report.root):\n"
        let width = (report.steps.map(\.id.count).max() ?? 0) + 2
        for step in report.steps { out += "  revert   " + pad(step.id, width) + step.title + "\n" }
        for file in report.files where file.kind != .directory {
            out += "  " + (file.kind == .file ? "restore  " : "remove   ") + file.path + "\n"
        }
        return out
    }

    static func render(_ report: SetupReport, withPlan: Bool) -> String {
        var out = ""
        if withPlan { out += plan(report) }
        let acted = report.steps.filter { $0.action != nil }
        if !acted.isEmpty {
            let width = (acted.map(\.id.count).max() ?? 0) + 2
            for step in acted {
                out += "  " + pad(step.action!.rawValue, 12) + pad(step.id, width) + (step.summary ?? step.title) + "\n"
            }
        }
        switch report.result {
        case .planned where report.mode == .revert || !report.files.isEmpty:
            out += "nothing changed (dry run)\n"
        case .planned:
            let n = report.steps.filter { $0.state == .needed }.count
            out += "\(n) step\(n == 1 ? "" : "s") to apply; nothing changed (dry run)\n"
            if let blocked = report.steps.first(where: { $0.state == .blocked }) {
                out += "setup would stop at \(blocked.id), which is blocked: \(blocked.detail ?? "")\n"
            }
        case .nothingToDo:
            out += "nothing to do: every step is done or does not apply here\n"
        case .applied:
            let n = report.steps.filter { $0.action == .applied || $0.action == .completed }.count
            out += "applied \(n) step\(n == 1 ? "" : "s"); verified: every applied step checks as done\n"
        case .stopped:
            out += "stopped: \(report.message ?? "a step is blocked")\n"
        case .failed:
            out += "failed: \(report.message ?? "a step failed")\n"
        case .reverted:
            out += "reverted: \(report.files.filter { $0.kind != .directory }.count) file change(s) undone; setup state cleared\n"
        case .nothingToRevert:
            out += "nothing to revert: setup has not changed this machine\n"
        }
        for note in report.notes { out += "note: \(note)\n" }
        if let log = report.log { out += "log: \(log)\n" }
        let revertPlan = report.result == .planned && !report.files.isEmpty
        if !revertPlan && (report.result != .failed || report.mode != .plan) {
            out += report.rebootRequired
                ? "reboot required: yes — \(report.rebootReasons.joined(separator: "; "))\n"
                : "reboot required: no — nothing setup changed needs one\n"
        }
        return out
    }

    private static func label(_ state: StepReport.State) -> String {
        switch state {
        case .done: "done"
        case .needed: "NEEDED"
        case .notApplicable: "not applicable"
        case .blocked: "BLOCKED"
        case .error: "ERROR"
        }
    }

    private static func pad(_ s: String, _ width: Int) -> String {
        s.count >= width ? s + " " : s + String(repeating: " ", count: width - s.count)
    }
}
