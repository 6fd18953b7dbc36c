import MTAgentLinux

/// Installs `mt-agent.service` (Type=notify, running `mt-agent serve`). Installed, not started:
/// the service starts at the next boot once enabled, after the reboot setup asks for.
///
/// The unit text lives here, in the binary; `Packaging/systemd/mt-agent.service` is the same
/// bytes for `/usr/bin/mt-agent` (a test keeps them equal).
public struct ServiceUnitStep: SetupStep {
    public let id = "service-unit"
    public let title = "Install the systemd unit mt-agent.service"
    public static let path = "/etc/systemd/system/mt-agent.service"

    public init() {}

    public func check(_ context: SetupContext) throws -> StepState {
        try context.ownedFileState(
            Self.path, content: Array(Self.unit(executable: context.options.executablePath).utf8),
            installing: "install \(Self.path) (ExecStart=\(context.options.executablePath) serve)", what: " unit")
    }

    public func apply(_ context: SetupContext) throws -> StepOutcome {
        try context.files.write(Self.path, Array(Self.unit(executable: context.options.executablePath).utf8), mode: 0o644)
        if context.systemdRunning { try ServiceEnableStep.systemctl(["daemon-reload"], context) }
        return StepOutcome(summary: "installed \(Self.path) (ExecStart=\(context.options.executablePath) serve)")
    }

    public static func unit(executable: String) -> String {
        """
        # mt-agent: the failback master target service. 'mt-agent setup' installs this file as
        # /etc/systemd/system/mt-agent.service and 'mt-agent setup --revert' removes it; the
        # packages install the same file.
        [Unit]
        Description=mt-agent failback master target (receives replication, keeps recovery points)
        Wants=network-online.target
        After=network-online.target local-fs.target

        [Service]
        Type=notify
        ExecStart=\(executable) serve
        WorkingDirectory=/var/lib/mt-agent
        Restart=on-failure
        RestartSec=5
        # Stopping drains connections and makes everything acked durable before exiting.
        TimeoutStopSec=120
        LimitNOFILE=65536
        # It holds the replicas' newest writes: let the OOM killer pick another process first.
        OOMScoreAdjust=-500

        [Install]
        WantedBy=multi-user.target

        """
    }
}
