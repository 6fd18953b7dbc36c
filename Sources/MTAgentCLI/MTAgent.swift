import ArgumentParser

/// The `mt-agent` command: one file per subcommand under Commands/.
public struct MTAgent: AsyncParsableCommand {
    public static let configuration = CommandConfiguration(
        commandName: "mt-agent",
        abstract: "Makes a Linux VM a failback master target and runs its replication service.",
        discussion: """
            Start with 'mt-agent disks' to see how this VM's disks are identified, and \
            'mt-agent check enable-uuid' to confirm every SCSI disk carries a stable identity.
            """,
        version: MTAgentVersion.string,
        subcommands: [DisksCommand.self, CheckCommand.self, PreflightCommand.self, CollectCommand.self, SetupCommand.self,
                      TargetsCommand.self, ServeCommand.self, SendCommand.self, PointsCommand.self, FailoverCommand.self,
                      CommitCommand.self, StatusCommand.self, LabCommand.self]
    )

    public init() {}
}

public enum MTAgentVersion {
    public static let string = "0.1.0"
}
