import ArgumentParser
import Glibc
import MTAgentCore
import MTAgentLinux
import MTAgentSetup

struct SetupCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "setup",
        abstract: "Make this VM a master target: plan, apply and verify every change; safe to run again.",
        discussion: """
            Prints the plan (each step done, needed, not applicable or blocked), then applies the \
            needed steps in order with --yes, or after a y/N prompt on a terminal. It stops at the \
            first blocked step with what to do, checks every applied step again, and ends with \
            whether a reboot is required and why. A second run changes nothing. Every file is backed \
            up before its first change (under /var/lib/mt-agent/setup/backup) and every action is \
            logged to /var/log/mt-agent/setup.log; a run that was killed is finished by running \
            setup again. --revert undoes the steps and restores every file byte for byte.

            Exit status: 0 done (or nothing to do, or --dry-run); 1 stopped at a blocked step; 2 a \
            check, step or verification failed, or bad input (nothing changed).

            Examples:
              mt-agent setup --dry-run
              mt-agent setup --yes
              mt-agent setup --yes --retention-device /dev/sdc --format xfs
              mt-agent setup --yes --passphrase-file /root/mt-passphrase
              mt-agent setup --revert --yes
              mt-agent setup --root /var/tmp/mt-image --dry-run --json
            """)

    @Flag(name: .long, help: "Print the plan and change nothing.")
    var dryRun = false

    @Flag(name: .long, help: "Apply the plan without asking.")
    var yes = false

    @Flag(name: .long, help: "Undo what setup applied and restore every file it changed.")
    var revert = false

    @Option(name: .long, help: ArgumentHelp("The device to prepare as the retention volume.", valueName: "device"))
    var retentionDevice: String?

    @Option(name: .long, help: ArgumentHelp("Format the retention device (ext4 or xfs) when it holds nothing.", valueName: "fs"))
    var format: String?

    @Option(
        name: .long,
        help: ArgumentHelp(
            "Allow formatting this device although it holds a filesystem (must name the --retention-device).",
            valueName: "device"))
    var forceFormat: String?

    @Option(name: .long, help: ArgumentHelp("Read the replication passphrase from this file (mode 0600).", valueName: "file"))
    var passphraseFile: String?

    @Flag(name: .long, help: "Install missing required packages (yum/dnf/apt-get).")
    var installPackages = false

    @OptionGroup var system: SystemOptions
    @OptionGroup var output: OutputOptions

    func validate() throws {
        if let format, format != "ext4" && format != "xfs" {
            throw ValidationError("--format must be ext4 or xfs, not '\(format)'")
        }
        if format != nil && retentionDevice == nil {
            throw ValidationError("--format needs --retention-device DEVICE: the device to format")
        }
        if let forceFormat {
            guard format != nil else { throw ValidationError("--force-format needs --format ext4|xfs") }
            guard forceFormat == retentionDevice else {
                throw ValidationError(
                    "--force-format must name the --retention-device (\(retentionDevice ?? "none")): it confirms that device's filesystem may be destroyed")
            }
        }
        if revert && (retentionDevice != nil || format != nil || passphraseFile != nil || installPackages) {
            throw ValidationError("--revert undoes what setup did; it takes none of --retention-device, --format, --force-format, --passphrase-file, --install-packages")
        }
        if dryRun && yes {
            throw ValidationError("--dry-run changes nothing and --yes applies: give one of them")
        }
        // The package manager that would run is this machine's, not the one of the tree under --root.
        if installPackages && RootedFiles(root: system.root).root != "/" {
            throw ValidationError("--install-packages installs on this machine; it cannot install into --root \(system.root): run the printed install command there")
        }
    }

    func run() throws {
        let files = RootedFiles(root: system.root)
        let root = files.root
        let live = root == "/"
        if let device = retentionDevice, !files.exists(device) {
            throw fail("--retention-device \(device) does not exist\(live ? "" : " under \(root)")")
        }
        if let passphraseFile, !RootedFiles(root: "/").exists(passphraseFile.hasPrefix("/") ? passphraseFile : Paths.currentDirectory() + "/" + passphraseFile) {
            throw fail("--passphrase-file \(passphraseFile) does not exist")
        }

        var options = SetupOptions()
        options.retentionDevice = retentionDevice
        options.format = format
        options.forceFormatDevice = forceFormat
        options.passphraseFile = passphraseFile
        options.installPackages = installPackages
        if live, let exe = Paths.readLink("/proc/self/exe") { options.executablePath = exe }

        let logger = system.makeLogger()
        let engine = SetupEngine(
            root: root, steps: SetupPlan.steps(options: options), system: files, runner: ProcessRunner(),
            inventory: try system.inventory(), options: options, logger: logger,
            systemdRunning: live && files.text("/proc/1/comm") == "systemd",
            failpoint: Failpoint.parse(getenv("MT_AGENT_FAILPOINT").map { String(cString: $0) }))

        do {
            if revert {
                try runRevert(engine, live: live)
            } else {
                try runApply(engine, live: live)
            }
        } catch let code as ExitCode {
            throw code
        } catch {
            throw fail("\(error)")
        }
    }

    private func runApply(_ engine: SetupEngine, live: Bool) throws {
        let plan = try engine.plan()
        let toDo = plan.steps.filter { $0.state == .needed }.count
        if dryRun || plan.result != .planned {
            try finish(plan)
            return
        }
        if !output.json { print(SetupText.plan(plan), terminator: "") }
        try confirm("Apply \(toDo == 0 ? "the pending record" : "\(toDo) change\(toDo == 1 ? "" : "s")") to \(engine.root)?", live: live, plan: plan)
        try finish(try engine.apply(), printPlan: false)
    }

    private func runRevert(_ engine: SetupEngine, live: Bool) throws {
        let plan = try engine.revertPlan()
        if plan.result == .nothingToRevert {
            try finish(plan, printPlan: false)
            return
        }
        if dryRun {
            if !output.json { print(SetupText.revertPlan(plan), terminator: "") }
            try finish(plan, printPlan: false)
            return
        }
        if !output.json { print(SetupText.revertPlan(plan), terminator: "") }
        try confirm("Revert \(plan.steps.count) step\(plan.steps.count == 1 ? "" : "s") and \(plan.files.count) file change\(plan.files.count == 1 ? "" : "s") on \(engine.root)?", live: live, plan: plan)
        try finish(try engine.revert(), printPlan: false)
    }

    /// Applies after `--yes`, or after "y" on a terminal; anything else changes nothing.
    private func confirm(_ question: String, live: Bool, plan: SetupReport) throws {
        if live && geteuid() != 0 {
            if output.json { print(try JSONOutput.encode(plan)) }
            throw fail("setup changes system files: run it as root (or with --dry-run to see the plan)")
        }
        if yes { return }
        guard isatty(STDIN_FILENO) == 1 else {
            if output.json { print(try JSONOutput.encode(plan)) }
            throw fail("not changing anything: stdin is not a terminal to confirm on; pass --yes to apply the plan above")
        }
        print("\(question) [y/N] ", terminator: "")
        fflush(nil)
        let answer = readLine()?.trimmingWhitespace().lowercased()
        guard answer == "y" || answer == "yes" else {
            print("nothing changed")
            throw ExitCode(0)
        }
    }

    private func finish(_ report: SetupReport, printPlan: Bool = true) throws {
        if output.json {
            print(try JSONOutput.encode(report))
        } else {
            print(SetupText.render(report, withPlan: printPlan), terminator: "")
        }
        if let message = report.message, report.exitCode != 0 {
            printError("mt-agent: error: \(message)")
        }
        if report.exitCode != 0 { throw ExitCode(report.exitCode) }
    }
}
