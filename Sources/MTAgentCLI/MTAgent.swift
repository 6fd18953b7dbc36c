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
        version: MTAgentVersion.full,
        subcommands: [DisksCommand.self, CheckCommand.self, PreflightCommand.self, CollectCommand.self, SetupCommand.self,
                      TargetsCommand.self, ServeCommand.self, SendCommand.self, PointsCommand.self, FailoverCommand.self,
                      CommitCommand.self, StatusCommand.self, LabCommand.self]
    )

    public init() {}
}

public enum MTAgentVersion {
    public static let string = "0.1.0"
    /// The commit it was built from (Plugins/BuildInfo); `unknown` outside a git checkout.
    public static let commit = buildCommit
    /// What `--version` prints: `0.1.0 (commit 1a2b3c4d5e6f)`.
    public static let full = "\(string) (commit \(commit))"
}
