import MTAgentLinux
import Testing

@testable import MTAgentSetup

/// os-release files as the distributions ship them (trimmed to the fields that matter).
enum OSReleaseSamples {
    static let centos7 = """
        NAME="CentOS Linux"
        VERSION="7 (Core)"
        ID="centos"
        ID_LIKE="rhel fedora"
        VERSION_ID="7"
        PRETTY_NAME="CentOS Linux 7 (Core)"
        CPE_NAME="cpe:/o:centos:centos:7"
        """
    static let rhel8 = """
        NAME="Red Hat Enterprise Linux"
        VERSION="8.9 (Ootpa)"
        ID="rhel"
        ID_LIKE="fedora"
        VERSION_ID="8.9"
        PLATFORM_ID="platform:el8"
        PRETTY_NAME="Red Hat Enterprise Linux 8.9 (Ootpa)"
        """
    static let rocky9 = """
        NAME="Rocky Linux"
        VERSION="9.3 (Blue Onyx)"
        ID="rocky"
        ID_LIKE="rhel centos fedora"
        VERSION_ID="9.3"
        PRETTY_NAME="Rocky Linux 9.3 (Blue Onyx)"
        """
    static let alma9 = """
        NAME="AlmaLinux"
        ID="almalinux"
        ID_LIKE="rhel centos fedora"
        VERSION_ID="9.4"
        PRETTY_NAME="AlmaLinux 9.4 (Seafoam Ocelot)"
        """
    static let ubuntu2004 = """
        NAME="Ubuntu"
        VERSION="20.04.6 LTS (Focal Fossa)"
        ID=ubuntu
        ID_LIKE=debian
        PRETTY_NAME="Ubuntu 20.04.6 LTS"
        VERSION_ID="20.04"
        """
    static let ubuntu2204 = """
        PRETTY_NAME="Ubuntu 22.04.4 LTS"
        NAME="Ubuntu"
        VERSION_ID="22.04"
        ID=ubuntu
        ID_LIKE=debian
        """
    static let ubuntu1804 = """
        NAME="Ubuntu"
        ID=ubuntu
        ID_LIKE=debian
        PRETTY_NAME="Ubuntu 18.04.6 LTS"
        VERSION_ID="18.04"
        """
    static let debian11 = """
        PRETTY_NAME="Debian GNU/Linux 11 (bullseye)"
        NAME="Debian GNU/Linux"
        VERSION_ID="11"
        VERSION="11 (bullseye)"
        ID=debian
        """
    static let debian12 = """
        PRETTY_NAME="Debian GNU/Linux 12 (bookworm)"
        NAME="Debian GNU/Linux"
        VERSION_ID="12"
        VERSION="12 (bookworm)"
        VERSION_CODENAME=bookworm
        ID=debian
        HOME_URL="https://www.debian.org/"
        """
    static let sles15 = """
        NAME="SLES"
        VERSION="15-SP5"
        VERSION_ID="15.5"
        PRETTY_NAME="SUSE Linux Enterprise Server 15 SP5"
        ID="sles"
        ID_LIKE="suse"
        """
    static let centos6 = """
        NAME="CentOS Linux"
        ID="centos"
        ID_LIKE="rhel fedora"
        VERSION_ID="6"
        PRETTY_NAME="CentOS Linux 6"
        """
}

@Suite("OS and kernel support", .tags(.small))
struct IdentityOSTests {
    @Test(arguments: [
        (OSReleaseSamples.centos7, "centos", "7", OSFamily.rhel, 7, "3.10.0-1160.el7.x86_64"),
        (OSReleaseSamples.rhel8, "rhel", "8.9", .rhel, 8, "4.18.0-513.5.1.el8_9.x86_64"),
        (OSReleaseSamples.rocky9, "rocky", "9.3", .rhel, 9, "5.14.0-362.8.1.el9_3.x86_64"),
        (OSReleaseSamples.alma9, "almalinux", "9.4", .rhel, 9, "5.14.0-427.13.1.el9_4.x86_64"),
        (OSReleaseSamples.ubuntu2004, "ubuntu", "20.04", .ubuntu, 20, "5.4.0-182-generic"),
        (OSReleaseSamples.ubuntu2204, "ubuntu", "22.04", .ubuntu, 22, "5.15.0-105-generic"),
        (OSReleaseSamples.debian11, "debian", "11", .debian, 11, "5.10.0-28-amd64"),
        (OSReleaseSamples.debian12, "debian", "12", .debian, 12, "6.1.0-21-amd64"),
    ])
    func supported(text: String, id: String, version: String, family: OSFamily, major: Int, kernel: String) throws {
        let release = try #require(OSRelease.parse(text))
        #expect(release.id == id)
        #expect(release.versionID == version)
        let support = OSSupport.evaluate(release: release, kernel: kernel)
        #expect(support.isSupported, "\(support.problem ?? "")")
        #expect(support.family == family)
        #expect(support.majorVersion == major)
        #expect(support.summary.contains(kernel))
    }

    @Test func parsesQuotingAndIDLike() throws {
        let release = try #require(OSRelease.parse(OSReleaseSamples.rocky9))
        #expect(release.idLike == ["rhel", "centos", "fedora"])
        #expect(release.prettyName == "Rocky Linux 9.3 (Blue Onyx)")
        let escaped = try #require(OSRelease.parse("ID='weird'\nPRETTY_NAME=\"A \\\"quoted\\\" name\"\n# ID=not-this\n"))
        #expect(escaped.id == "weird")
        #expect(escaped.prettyName == "A \"quoted\" name")
        #expect(escaped.versionID == "")
        #expect(OSRelease.parse("NAME=nothing\n") == nil)
    }

    @Test(arguments: [
        (OSReleaseSamples.sles15, "SUSE Linux Enterprise Server 15 SP5 is not a supported distribution"),
        (OSReleaseSamples.ubuntu1804, "Ubuntu 18.04.6 LTS is older than Ubuntu 20.04"),
        (OSReleaseSamples.centos6, "CentOS Linux 6 is not a supported version"),
        ("ID=debian\nPRETTY_NAME=\"Debian GNU/Linux trixie/sid\"\n", "has no VERSION_ID"),
    ])
    func unsupported(text: String, problem: String) throws {
        let support = OSSupport.evaluate(release: OSRelease.parse(text), kernel: "5.14.21-150500.55.39-default")
        #expect(!support.isSupported)
        #expect(support.family == nil)
        #expect(support.problem?.contains(problem) == true, "\(support.problem ?? "nil")")
    }

    @Test func oldKernelAndMissingRelease() {
        let old = OSSupport.evaluate(release: OSRelease.parse(OSReleaseSamples.debian12), kernel: "2.6.32-754.el6.x86_64")
        #expect(old.problem == "kernel 2.6.32-754.el6.x86_64 is older than 3.10")
        #expect(OSSupport.evaluate(release: nil, kernel: nil).problem?.hasPrefix("cannot read /etc/os-release") == true)
        #expect(OSSupport.kernelAtLeast("3.10.0-1160.el7.x86_64", [3, 10]))
        #expect(OSSupport.kernelAtLeast("6.1.0-21-amd64", [3, 10]))
        #expect(!OSSupport.kernelAtLeast("3.9.11", [3, 10]))
    }

    @Test func stepIsDoneOnSupportedAndWarnsOtherwise() throws {
        let root = try IdentityScratchRoot()
        try root.put("/etc/os-release", OSReleaseSamples.rhel8)
        try root.put("/proc/sys/kernel/osrelease", "4.18.0-513.el8.x86_64\n")
        #expect(try OSSupportStep().check(identityContext(root)) == .done)

        try root.put("/etc/os-release", OSReleaseSamples.sles15)
        guard case .notApplicable(let why) = try OSSupportStep().check(identityContext(root)) else {
            Issue.record("SLES should be notApplicable")
            return
        }
        #expect(why.contains("SUSE Linux Enterprise Server 15 SP5 is not a supported distribution"))
        #expect(why.contains("kernel 4.18.0-513.el8.x86_64"))
        #expect(why.contains("setup continues"))
    }

    @Test func stepReadsUsrLibOSReleaseFallback() throws {
        let root = try IdentityScratchRoot()
        try root.put("/usr/lib/os-release", OSReleaseSamples.debian12)
        #expect(try OSSupportStep().check(identityContext(root)) == .done)
    }
}

@Suite("required tools", .tags(.small))
struct IdentityToolsTests {
    /// A root with os-release and the given executables present.
    func machine(_ release: String, having executables: [String], in dir: String = "/usr/sbin") throws -> IdentityScratchRoot {
        let root = try IdentityScratchRoot()
        try root.put("/etc/os-release", release)
        for e in executables { try root.put("\(dir)/\(e)", "#!/bin/sh\n", mode: 0o755) }
        return root
    }

    static let allTools = RequiredTool.all.map(\.executable)

    @Test(arguments: [
        (OSReleaseSamples.centos7, "yum install -y lsscsi device-mapper-multipath kexec-tools"),
        (OSReleaseSamples.rhel8, "dnf install -y lsscsi device-mapper-multipath kexec-tools"),
        (OSReleaseSamples.rocky9, "dnf install -y lsscsi device-mapper-multipath kexec-tools"),
        (OSReleaseSamples.ubuntu2204, "apt-get update && apt-get install -y lsscsi multipath-tools kexec-tools"),
        (OSReleaseSamples.debian12, "apt-get update && apt-get install -y lsscsi multipath-tools kexec-tools"),
    ])
    func blockedWithTheDistributionsCommand(release: String, command: String) throws {
        let root = try machine(release, having: ["lvm", "kpartx", "mkfs.xfs", "mkfs.ext4"])
        let state = try RequiredToolsStep().check(identityContext(root))
        #expect(state == .blocked("missing lsscsi, multipath, kexec (optional); run: \(command)  (or rerun setup with --install-packages)"))
    }

    @Test func allPresentIsDoneWhereverTheyLive() throws {
        let root = try machine(OSReleaseSamples.debian12, having: ["lsscsi", "kpartx", "kexec"], in: "/usr/bin")
        for e in ["multipath", "mkfs.xfs"] { try root.put("/sbin/\(e)", "", mode: 0o755) }
        for e in ["lvm", "mkfs.ext4"] { try root.put("/usr/sbin/\(e)", "", mode: 0o755) }
        #expect(try RequiredToolsStep().check(identityContext(root)) == .done)
    }

    @Test func onlyOptionalMissingDoesNotBlock() throws {
        let root = try machine(OSReleaseSamples.rocky9, having: Self.allTools.filter { $0 != "kexec" })
        #expect(try RequiredToolsStep().check(identityContext(root))
            == .notApplicable("optional kexec not installed (kdump needs it); to install: dnf install -y kexec-tools"))
    }

    @Test func installsThroughTheRunnerWithInstallPackages() throws {
        let root = try machine(OSReleaseSamples.ubuntu2004, having: ["lsscsi", "lvm", "kexec"])
        var options = SetupOptions()
        options.installPackages = true
        let runner = IdentityFakeRunner()
        runner.onRun = { argv in
            // Playing apt: the packages' executables appear.
            guard argv.contains("install") else { return }
            for e in ["multipath", "kpartx", "mkfs.xfs", "mkfs.ext4"] { try? root.put("/usr/sbin/\(e)", "", mode: 0o755) }
        }
        let context = identityContext(root, options: options, runner: runner)
        let step = RequiredToolsStep()
        #expect(try step.check(context)
            == .needed("install multipath, kpartx, mkfs.xfs, mkfs.ext4: apt-get update && apt-get install -y multipath-tools kpartx xfsprogs e2fsprogs"))
        let outcome = try step.apply(context)
        #expect(runner.commands == [
            ["apt-get", "update"],
            ["env", "DEBIAN_FRONTEND=noninteractive", "apt-get", "install", "-y", "multipath-tools", "kpartx", "xfsprogs", "e2fsprogs"],
        ])
        #expect(outcome.summary == "installed multipath-tools kpartx xfsprogs e2fsprogs")
        #expect(try step.check(context) == .done)
    }

    @Test func rhelInstallUsesRHELNamesAndReportsFailure() throws {
        let root = try machine(OSReleaseSamples.centos7, having: Self.allTools.filter { $0 != "multipath" })
        var options = SetupOptions()
        options.installPackages = true
        let runner = IdentityFakeRunner()
        runner.status = 1
        let context = identityContext(root, options: options, runner: runner)
        #expect(throws: RequiredToolsError.installFailed("yum install -y device-mapper-multipath", status: 1, stderr: "E: Unable to locate package")) {
            try RequiredToolsStep().apply(context)
        }
        #expect(runner.commands == [["yum", "install", "-y", "device-mapper-multipath"]])
        // The package manager said yes but the tool did not appear: say so rather than claim success.
        runner.status = 0
        #expect(throws: RequiredToolsError.stillMissing(["multipath"])) { try RequiredToolsStep().apply(context) }
    }

    @Test func unknownDistributionGetsBothNameSets() throws {
        let root = try machine(OSReleaseSamples.sles15, having: Self.allTools.filter { $0 != "lsscsi" })
        #expect(try RequiredToolsStep().check(identityContext(root))
            == .blocked("missing lsscsi; install packages lsscsi (Debian names) or lsscsi (RHEL names) with this distribution's package manager"))
    }

    @Test func packageManagerFollowsIDLike() throws {
        let oracle8 = OSRelease(id: "ol", versionID: "8.9", idLike: ["fedora"])
        #expect(PackageManager.forRelease(oracle8) == .dnf)
        let mint = OSRelease(id: "linuxmint", versionID: "21.3", idLike: ["ubuntu", "debian"])
        #expect(PackageManager.forRelease(mint) == .aptGet)
        let oracle7 = OSRelease(id: "ol", versionID: "7.9", idLike: ["rhel", "fedora"])
        #expect(PackageManager.forRelease(oracle7) == .yum)
    }
}
