import MTAgentLinux

/// Enables mt-agent.service (`systemctl enable`) when systemd is PID 1. Elsewhere (a container,
/// a `--root` tree) it does not apply and says what to run on the machine.
public struct ServiceEnableStep: SetupStep {
    public let id = "service-enable"
    public let title = "Enable mt-agent.service at boot"
    static let unit = "mt-agent.service"

    public init() {}

    public func check(_ context: SetupContext) throws -> StepState {
        guard context.systemdRunning else {
            return .notApplicable("systemd is not PID 1 here; on the machine run: systemctl daemon-reload && systemctl enable \(Self.unit)")
        }
        let result = try context.runner.run(["systemctl", "is-enabled", Self.unit])
        let state = result.stdout.split(separator: "\n").first.map(String.init) ?? ""
        return state == "enabled" ? .done : .needed("systemctl enable \(Self.unit) (it is \(state.isEmpty ? "not installed" : state))")
    }

    public func apply(_ context: SetupContext) throws -> StepOutcome {
        try Self.systemctl(["daemon-reload"], context)
        try Self.systemctl(["enable", Self.unit], context)
        return StepOutcome(summary: "enabled \(Self.unit); it starts at the next boot")
    }

    public func revert(_ context: SetupContext) throws {
        guard context.systemdRunning else { return }
        try Self.systemctl(["disable", Self.unit], context)
    }

    static func systemctl(_ arguments: [String], _ context: SetupContext) throws {
        let command = ["systemctl"] + arguments
        context.logger.info("running", metadata: ["command": "\(command.joined(separator: " "))"])
        let result = try context.runner.run(command)
        guard result.status == 0 else {
            throw CommandError.failed(command.joined(separator: " "), status: result.status, stderr: result.stderr)
        }
    }
}
