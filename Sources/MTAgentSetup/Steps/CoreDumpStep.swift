import MTAgentLinux

/// Lets mt-agent.service dump core: a systemd drop-in with `LimitCORE=infinity`. Where the core
/// goes stays the kernel's `core_pattern` (systemd-coredump, abrt or apport, which all honour
/// the limit; or a file `core` in the service's working directory, /var/lib/mt-agent). A
/// drop-in rather than a system-wide limit: it changes nothing for the machine's other programs.
public struct CoreDumpStep: SetupStep {
    public let id = "core-dumps"
    public let title = "Enable core dumps for mt-agent.service (LimitCORE=infinity drop-in)"
    public static let path = "/etc/systemd/system/mt-agent.service.d/50-core-dumps.conf"

    public init() {}

    public func check(_ context: SetupContext) throws -> StepState {
        try context.ownedFileState(Self.path, content: Array(Self.dropIn.utf8), installing: "install \(Self.path)", what: "")
    }

    public func apply(_ context: SetupContext) throws -> StepOutcome {
        try context.files.write(Self.path, Array(Self.dropIn.utf8), mode: 0o644)
        if context.systemdRunning { try ServiceEnableStep.systemctl(["daemon-reload"], context) }
        return StepOutcome(summary: "installed \(Self.path); applies from the service's next start")
    }

    public static let dropIn = """
        # Written by 'mt-agent setup': let mt-agent.service dump core when it crashes. Where the core
        # goes is the kernel's core_pattern (systemd-coredump, abrt, apport, or a file in
        # /var/lib/mt-agent, the service's working directory).
        [Service]
        LimitCORE=infinity

        """
}
