import MTAgentLinux

/// A program mt-agent or the admin's recovery work needs, and the package that ships it.
public struct RequiredTool: Sendable, Equatable, Codable {
    /// The executable looked for (`multipath`, `mkfs.xfs`).
    public var executable: String
    /// Package name on Debian and Ubuntu.
    public var debianPackage: String
    /// Package name on RHEL and its rebuilds.
    public var rhelPackage: String
    /// False for tools setup reports but does not insist on.
    public var required: Bool

    public func package(for manager: PackageManager) -> String {
        manager == .aptGet ? debianPackage : rhelPackage
    }

    /// lsscsi to show SCSI addresses, multipath and kpartx for multipathed and partitioned
    /// targets, lvm2 to filter activation, mkfs for the retention volume; kexec-tools for kdump.
    public static let all: [RequiredTool] = [
        RequiredTool(executable: "lsscsi", debianPackage: "lsscsi", rhelPackage: "lsscsi", required: true),
        RequiredTool(executable: "multipath", debianPackage: "multipath-tools", rhelPackage: "device-mapper-multipath", required: true),
        RequiredTool(executable: "lvm", debianPackage: "lvm2", rhelPackage: "lvm2", required: true),
        RequiredTool(executable: "kpartx", debianPackage: "kpartx", rhelPackage: "kpartx", required: true),
        RequiredTool(executable: "mkfs.xfs", debianPackage: "xfsprogs", rhelPackage: "xfsprogs", required: true),
        RequiredTool(executable: "mkfs.ext4", debianPackage: "e2fsprogs", rhelPackage: "e2fsprogs", required: true),
        RequiredTool(executable: "kexec", debianPackage: "kexec-tools", rhelPackage: "kexec-tools", required: false),
    ]

    /// Where packages put these programs; `/sbin` and `/bin` are symlinks into `/usr` on merged systems.
    public static let searchDirectories = ["/usr/sbin", "/sbin", "/usr/bin", "/bin"]

    /// The tools whose executable is in none of `searchDirectories` under the system root.
    public static func missing(in system: SystemFiles, tools: [RequiredTool] = all) -> [RequiredTool] {
        tools.filter { tool in
            !searchDirectories.contains { system.exists($0 + "/" + tool.executable) }
        }
    }
}

/// The package manager of a distribution, and the exact commands to install with it.
public enum PackageManager: String, Sendable, Equatable, Codable {
    /// RHEL/CentOS 7.
    case yum
    /// RHEL 8 and 9 and their rebuilds.
    case dnf
    /// Debian and Ubuntu.
    case aptGet = "apt-get"

    /// The manager for a release: by `ID`, then by `ID_LIKE` so that derivatives mt-agent does not
    /// support still get a usable command. Nil when neither names a known family.
    public static func forRelease(_ release: OSRelease) -> PackageManager? {
        let major = release.versionNumbers.first
        for id in [release.id] + release.idLike {
            switch id {
            case "debian", "ubuntu":
                return .aptGet
            case "rhel", "centos", "rocky", "almalinux", "fedora":
                if release.id == "fedora" { return .dnf }
                if let major, major <= 7 { return .yum }
                return .dnf
            default:
                continue
            }
        }
        return nil
    }

    /// The commands setup runs, in order (apt refreshes its lists first); argv form.
    public func installCommands(_ packages: [String]) -> [[String]] {
        switch self {
        case .yum: [["yum", "install", "-y"] + packages]
        case .dnf: [["dnf", "install", "-y"] + packages]
        case .aptGet:
            [
                ["apt-get", "update"],
                ["env", "DEBIAN_FRONTEND=noninteractive", "apt-get", "install", "-y"] + packages,
            ]
        }
    }

    /// The one line an admin would type: `dnf install -y lsscsi kpartx`,
    /// `apt-get update && apt-get install -y lsscsi kpartx`.
    public func installCommandLine(_ packages: [String]) -> String {
        let install = packages.joined(separator: " ")
        switch self {
        case .yum: return "yum install -y \(install)"
        case .dnf: return "dnf install -y \(install)"
        case .aptGet: return "apt-get update && apt-get install -y \(install)"
        }
    }
}
