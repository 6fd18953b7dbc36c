import FoundationEssentials
import Glibc
import MTAgentCore
import MTAgentLinux
import Testing

@testable import MTAgentSetup

@Suite("setup steps", .tags(.medium), .serialized)
struct SetupStepTests {
    @Test(arguments: [
        ("centos7", "/etc/mdadm.conf"), ("rhel8", "/etc/mdadm.conf"),
        ("ubuntu2004", "/etc/mdadm/mdadm.conf"), ("debian12", "/etc/mdadm/mdadm.conf"),
    ])
    func mdadmConfLivesWhereTheDistributionKeepsIt(_ distribution: String, _ path: String) throws {
        let machine = try SetupScratchRoot(distribution)
        defer { machine.cleanup() }
        #expect(MdadmStep.path(RootedFiles(root: machine.root)) == path)
    }

    /// The system runs on md: its arrays get ARRAY lines from mdadm on the machine.
    @Test func systemArraysGetTheirArrayLines() throws {
        let machine = try SetupScratchRoot("debian12")
        defer { machine.cleanup() }
        var md = Disk(name: "md0", devnode: "/dev/md0", devno: "9:0", transport: .md)
        md.mountpoints = ["/"]
        md.role = .system
        let inventory = Inventory(host: Host(root: machine.root), disks: [md])
        let runner = SetupFakeRunner()
        let line = "ARRAY /dev/md0 metadata=1.2 name=mt-debian12:0 UUID=0a1b2c3d:4e5f6071:8293a4b5:c6d7e8f9"
        runner.on("mdadm", "--detail", "--brief", "/dev/md0", stdout: line + "\n")
        let context = try setupContext(machine.root, runner: runner, inventory: inventory)
        let step = MdadmStep(live: true)
        guard case .needed(let what) = try step.check(context) else { Issue.record("not needed"); return }
        #expect(what.contains("add " + line))
        _ = try step.apply(context)
        #expect(machine.text("/etc/mdadm/mdadm.conf")?.hasSuffix("AUTO -all\n" + line + "\n") == true)
        #expect(try step.check(context) == .done)

        // On a --root tree there is no mdadm to ask.
        guard case .blocked(let why) = try MdadmStep(live: false).check(context) else { Issue.record("not blocked"); return }
        #expect(why.contains("md array(s) md0"))
    }

    @Test func lvmWithADevicesFileListingOnlySystemDisksIsDone() throws {
        let machine = try SetupScratchRoot("rhel8")
        defer { machine.cleanup() }
        try machine.put(LVMFilterStep.devicesFile, """
            # LVM uses devices listed in this file.
            VERSION=1.1.1
            IDTYPE=sys_wwid IDNAME=naa.6000c2911223344a DEVNAME=/dev/sda1 PVID=Xc1pTPQ0zm7Fo1V0x6GQb2yN8hUaLsTq PART=1

            """)
        let context = try setupContext(machine.root)
        #expect(try LVMFilterStep().check(context) == .done, "RHEL 9 style: the devices file already limits LVM")

        try machine.put(LVMFilterStep.devicesFile, "VERSION=1.1.2\nIDTYPE=devname IDNAME=/dev/sdb DEVNAME=/dev/sdb PVID=aaaa\n")
        guard case .blocked(let why) = try LVMFilterStep().check(context) else { Issue.record("not blocked"); return }
        #expect(why.contains("lvmdevices --deldev /dev/sdb"))

        // use_devicesfile = 0 in lvm.conf: the filter is what counts again.
        try machine.put("/etc/lvm/lvm.conf", "devices {\n\tuse_devicesfile = 0\n}\n")
        guard case .needed = try LVMFilterStep().check(context) else { Issue.record("not needed"); return }
    }

    /// systemctl as far as the enable step uses it: `is-enabled` answers from what `enable` and
    /// `disable` did.
    final class FakeSystemctl: CommandRunning, @unchecked Sendable {
        let lock = Lock()
        var commands: [[String]] = []
        var enabled = false

        func run(_ argv: [String]) throws -> CommandResult {
            lock.withLock {
                commands.append(argv)
                switch Array(argv.dropFirst().prefix(1)) {
                case ["is-enabled"]: return CommandResult(status: enabled ? 0 : 1, stdout: enabled ? "enabled\n" : "disabled\n", stderr: "")
                case ["enable"]: enabled = true
                case ["disable"]: enabled = false
                default: break
                }
                return CommandResult(status: 0, stdout: "", stderr: "")
            }
        }
    }

    @Test func theServiceIsEnabledWhenSystemdRunsAndDisabledOnRevert() throws {
        let machine = try SetupScratchRoot("rhel8")
        defer { machine.cleanup() }
        let systemctl = FakeSystemctl()
        let steps: [SetupStep] = [ServiceUnitStep(), ServiceEnableStep()]
        let plan = try setupEngine(machine.root, steps: steps, runner: systemctl, systemdRunning: true).plan()
        #expect(plan.steps.last?.detail == "systemctl enable mt-agent.service (it is disabled)")

        let report = try setupEngine(machine.root, steps: steps, runner: systemctl, systemdRunning: true).apply()
        #expect(report.result == .applied, "\(report.message ?? "")")
        let enable = try #require(systemctl.commands.firstIndex(of: ["systemctl", "enable", "mt-agent.service"]))
        #expect(systemctl.commands[..<enable].contains(["systemctl", "daemon-reload"]), "the unit is loaded before it is enabled")
        #expect(try setupEngine(machine.root, steps: steps, runner: systemctl, systemdRunning: true).plan().result == .nothingToDo)

        #expect(try setupEngine(machine.root, steps: steps, runner: systemctl, systemdRunning: true).revert().result == .reverted)
        #expect(systemctl.commands.last == ["systemctl", "disable", "mt-agent.service"])
        #expect(!systemctl.enabled)
        #expect(!HostFile.exists(machine.host(ServiceUnitStep.path)))
    }

    @Test func withoutSystemdTheServiceStepSaysWhatToRun() throws {
        let machine = try SetupScratchRoot("ubuntu2004")
        defer { machine.cleanup() }
        let runner = SetupFakeRunner()
        let state = try ServiceEnableStep().check(try setupContext(machine.root, runner: runner))
        #expect(state == .notApplicable("systemd is not PID 1 here; on the machine run: systemctl daemon-reload && systemctl enable mt-agent.service"))
        #expect(runner.commands.isEmpty)
    }

    @Test func theInitramfsIsRebuiltAfterTheConfigsItCarriesChange() throws {
        let machine = try SetupScratchRoot("debian12")
        defer { machine.cleanup() }
        let image = machine.host("/boot/initrd.img-6.1.0-18-amd64")
        try machine.put("/boot/initrd.img-6.1.0-18-amd64", "initramfs")
        // Built yesterday: before the configs are changed, the image is not stale.
        var old = [timespec(tv_sec: 0, tv_nsec: (1 << 30) - 2), timespec(tv_sec: 1_000_000_000, tv_nsec: 0)]
        utimensat(AT_FDCWD, machine.host("/etc/lvm/lvm.conf"), &old, 0)
        utimensat(AT_FDCWD, machine.host("/etc/mdadm/mdadm.conf"), &old, 0)
        let runner = SetupFakeRunner()
        runner.on("update-initramfs", "-u", "-k", "6.1.0-18-amd64") {
            var now = [timespec(tv_sec: 0, tv_nsec: (1 << 30) - 1), timespec(tv_sec: 0, tv_nsec: (1 << 30) - 1)]  // UTIME_NOW
            utimensat(AT_FDCWD, image, &now, 0)
        }
        let steps: [SetupStep] = [LVMFilterStep(), MdadmStep(), InitramfsStep(live: true)]
        let engine = try setupEngine(machine.root, steps: steps, runner: runner)
        let plan = try engine.plan()
        #expect(plan.steps.last?.state == .needed)
        #expect(plan.steps.last?.detail == "run 'update-initramfs -u -k 6.1.0-18-amd64' (lvm changes, mdadm changes)")
        let report = try engine.apply()
        #expect(report.result == .applied, "\(report.message ?? "")")
        #expect(runner.commands == [["update-initramfs", "-u", "-k", "6.1.0-18-amd64"]])
        #expect(report.rebootReasons.contains("initramfs: the rebuilt initramfs is used from the next boot"))
        #expect(try setupEngine(machine.root, steps: steps, runner: runner).plan().result == .nothingToDo)

        // On a --root tree it says what to run instead.
        try machine.put("/etc/lvm/lvm.conf", "devices {\n}\n")
        let rooted = try InitramfsStep().check(try setupContext(machine.root))
        guard case .notApplicable(let why) = rooted else { Issue.record("\(rooted)"); return }
        #expect(why.hasSuffix("on that machine run 'update-initramfs -u -k 6.1.0-18-amd64'"))

        // Revert puts the restored configs back into the initramfs.
        #expect(try setupEngine(machine.root, steps: steps, runner: runner).revert().result == .reverted)
        #expect(runner.commands.count == 2)
    }

    @Test func theRHELInitramfsIsRebuiltWithDracut() throws {
        let machine = try SetupScratchRoot("rhel8")
        defer { machine.cleanup() }
        try machine.put("/boot/initramfs-4.18.0-513.5.1.el8_9.x86_64.img", "initramfs")
        let state = try InitramfsStep(live: true).check(try setupContext(machine.root))
        #expect(state == .needed("run 'dracut -f /boot/initramfs-4.18.0-513.5.1.el8_9.x86_64.img 4.18.0-513.5.1.el8_9.x86_64' (lvm changes, mdadm changes)"))
    }

    @Test func aLocallyEditedUnitIsReplacedAndRevertRestoresTheEdit() throws {
        let machine = try SetupScratchRoot("centos7")
        defer { machine.cleanup() }
        try machine.put(ServiceUnitStep.path, "[Service]\nExecStart=/opt/old/mt-agent serve\n", mode: 0o600)
        let before = machine.snapshot()
        let context = try setupContext(machine.root)
        #expect(try ServiceUnitStep().check(context) == .needed("replace /etc/systemd/system/mt-agent.service (it differs from this version's unit)"))
        #expect(try setupEngine(machine.root, steps: [ServiceUnitStep()]).apply().result == .applied)
        #expect(machine.text(ServiceUnitStep.path) == ServiceUnitStep.unit(executable: "/usr/bin/mt-agent"))
        #expect(try setupEngine(machine.root, steps: [ServiceUnitStep()]).revert().result == .reverted)
        #expect(machine.snapshot(excluding: ["/var"]) == before)
    }

    /// A package installed the same unit and rules under /usr/lib: setup leaves them in charge
    /// and writes no /etc copy that would hide the next package upgrade's version.
    @Test func packagedUnitAndRulesAreLeftInCharge() throws {
        let machine = try SetupScratchRoot("debian12")
        defer { machine.cleanup() }
        try machine.put(ServiceUnitStep.packagedPath, ServiceUnitStep.unit(executable: "/usr/bin/mt-agent"))
        try machine.put(UdevRulesStep.packagedPath, UdevRulesStep.rules)
        let before = machine.snapshot()
        let context = try setupContext(machine.root)
        #expect(try ServiceUnitStep().check(context) == .done)
        #expect(try UdevRulesStep().check(context) == .done)
        #expect(try setupEngine(machine.root, steps: [UdevRulesStep(), ServiceUnitStep()]).apply().result == .nothingToDo)
        #expect(machine.snapshot(excluding: ["/var"]) == before)
        #expect(try setupEngine(machine.root, steps: [UdevRulesStep(), ServiceUnitStep()]).revert().result == .nothingToRevert)
        #expect(machine.text(ServiceUnitStep.packagedPath) == ServiceUnitStep.unit(executable: "/usr/bin/mt-agent"))
    }

    /// Setup run from another binary than the package's, or a package of another version: the
    /// unit setup writes in /etc runs the binary setup ran from, as without a package.
    @Test func aPackagedUnitForAnotherBinaryGetsAnEtcCopy() throws {
        let machine = try SetupScratchRoot("debian12")
        defer { machine.cleanup() }
        try machine.put(ServiceUnitStep.packagedPath, ServiceUnitStep.unit(executable: "/usr/local/bin/mt-agent"))
        try machine.put(UdevRulesStep.packagedPath, UdevRulesStep.rules + "# an older version\n")
        let context = try setupContext(machine.root)
        #expect(try ServiceUnitStep().check(context) == .needed("install /etc/systemd/system/mt-agent.service (ExecStart=/usr/bin/mt-agent serve)"))
        #expect(try UdevRulesStep().check(context) == .needed("install /etc/udev/rules.d/69-mt-agent.rules"))
    }

    @Test func theUnitRunsTheBinaryItWasGiven() throws {
        var options = SetupOptions()
        options.executablePath = "/usr/local/bin/mt-agent"
        let unit = ServiceUnitStep.unit(executable: options.executablePath)
        #expect(unit.contains("\nExecStart=/usr/local/bin/mt-agent serve\n"))
        #expect(unit.contains("\nType=notify\n"))
        #expect(unit.contains("\nWantedBy=multi-user.target\n"))
        #expect(unit.contains("\nRestart=on-failure\n"))
        #expect(unit.contains("\nWatchdogSec=5min\n"))
        #expect(unit.contains("\nExecReload=/bin/kill -HUP $MAINPID\n"))
    }

    /// The sandbox must leave the service what it writes: every block device (no device list,
    /// which ProtectClock= would imply too), the retention volume wherever it is mounted (not
    /// strict: no fixed writable paths), and its capabilities for files root does not own.
    @Test func theSandboxLeavesBlockDevicesAndTheRetentionVolumeWritable() {
        let directives = ServiceUnitStep.unit(executable: "/usr/bin/mt-agent").split(separator: "\n").filter { !$0.hasPrefix("#") }
        func value(_ key: String) -> String? {
            directives.last { $0.hasPrefix(key + "=") }.map { String($0.dropFirst(key.count + 1)) }
        }
        #expect(value("PrivateDevices") == "no")
        #expect(value("DeviceAllow") == nil)
        #expect(value("DevicePolicy") == nil)
        #expect(value("ProtectClock") == nil)
        #expect(value("ProtectSystem") == "full")
        #expect(value("ProtectHome") == "read-only")
        #expect(value("ReadOnlyPaths") == nil && value("InaccessiblePaths") == nil)
        #expect(value("SystemCallFilter") == "@system-service")
        #expect(value("CapabilityBoundingSet")?.split(separator: " ").contains("CAP_DAC_OVERRIDE") == true)
        #expect(value("RestrictAddressFamilies") == "AF_UNIX AF_INET AF_INET6 AF_NETLINK")
    }
}

/// The files packages install are the bytes the binary installs (or, for the config, writes):
/// one source of truth, the text in the binary; `MT_AGENT_UPDATE_GOLDEN=1` rewrites Packaging/
/// from it.
@Suite("Packaging files", .tags(.small))
struct PackagingFilesTests {
    static let packaging = setupFixtures + "/../../../Packaging"

    @Test(arguments: [
        ("udev/69-mt-agent.rules", UdevRulesStep.rules),
        ("systemd/mt-agent.service", ServiceUnitStep.unit(executable: "/usr/bin/mt-agent")),
        // The packages' conffile /etc/mt-agent/mt-agent.conf: what setup's config step writes.
        ("config/mt-agent.conf", AgentConfig(retentionPath: SetupOptions().retentionPath).render()),
    ])
    func packagingMatchesTheBinary(_ file: String, _ text: String) throws {
        let path = Self.packaging + "/" + file
        if updateGolden {
            try HostFile.makeDirectories(HostFile.dirname(path))
            try HostFile.write(path, Array(text.utf8), mode: 0o644)
        }
        let shipped = try HostFile.read(path)
        #expect(shipped == Array(text.utf8), "Packaging/\(file) differs from the text in the binary; MT_AGENT_UPDATE_GOLDEN=1 regenerates it")
    }

    @Test func theUdevRulesSayWhatTheyMust() {
        let rules = UdevRulesStep.rules
        #expect(rules.contains(#"ATTRS{vendor}=="VMware*", ATTR{device/timeout}="180""#))
        #expect(rules.contains(#"TEST=="/etc/mt-agent/targets/$env{ID_SERIAL}""#))
        #expect(rules.contains(#"ENV{UDISKS_IGNORE}="1""#))
        #expect(rules.contains(#"ENV{SYSTEMD_READY}="0""#))
        // Every rule line is complete (udev has no line continuation here).
        for line in rules.split(separator: "\n") where !line.hasPrefix("#") {
            #expect(line.hasPrefix("ACTION") || line.hasPrefix("SUBSYSTEM") || line.hasPrefix("ENV") || line.hasPrefix("LABEL"))
        }
    }
}
