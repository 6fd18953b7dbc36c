import ArgumentParser

/// The `mt-agent` command: one file per subcommand under Commands/.
public struct MTAgent: ParsableCommand {
    public static let configuration = CommandConfiguration(
        commandName: "mt-agent",
        abstract: "Prepares a Linux VM to be a failback master target: finds its disks by stable SCSI identity.",
        discussion: """
            Start with 'mt-agent disks' to see how this VM's disks are identified, and \
            'mt-agent check enable-uuid' to confirm every SCSI disk carries a stable identity.
            """,
        version: MTAgentVersion.string,
        subcommands: [DisksCommand.self, CheckCommand.self, PreflightCommand.self, CollectCommand.self, SetupCommand.self]
    )

    public init() {}
}

public enum MTAgentVersion {
    public static let string = "0.1.0"
}
