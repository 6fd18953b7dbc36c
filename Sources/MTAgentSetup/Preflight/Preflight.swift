import FoundationEssentials
import Logging
import MTAgentCore
import MTAgentLinux

/// `mt-agent preflight`: every check that must hold before reprotect or failback, gathered from
/// the machine under `root` and decided by the rules in MTAgentCore and the setup steps' own
/// readers. A check that cannot be evaluated says so (`skip` or `fail` with the reason); nothing
/// here changes the machine.
public struct Preflight: Sendable {
    public let root: String
    public let retentionPath: String?
    public let logger: Logger
    /// stat, statvfs and the write probe of the retention volume (a test describes its own).
    public let volumes: VolumeProbing

    public init(root: String, retentionPath: String? = nil, logger: Logger, volumes: VolumeProbing = LiveVolumes()) {
        self.root = root
        self.retentionPath = retentionPath
        self.logger = logger
        self.volumes = volumes
    }

    public func run() throws -> CheckReport {
        let files = RootedFiles(root: root)
        let inventory = try Discovery.forRoot(root, logger: logger).inventory()
        let facts = HostFacts(files: files)
        let config = loadConfig(files)
        var checks: [CheckResult] = []

        checks += EnableUUIDCheck.evaluate(inventory)
        checks.append(PreflightRules.scsiController(inventory))
        checks.append(PreflightRules.diskCount(inventory))
        checks.append(PreflightRules.vmwareTools(hypervisor: inventory.host.hypervisor, running: facts.processRunning("vmtoolsd")))
        checks.append(PreflightRules.hostsFile(hostname: facts.hostname, addresses: facts.addresses, hosts: facts.hosts))
        checks.append(PreflightRules.timeSync(synchronized: facts.clockSynchronized))
        checks.append(PreflightRules.rootNotOnLVM(inventory))
        checks.append(osSupport(files))
        checks.append(packages(files))
        checks.append(setupState(files))
        checks.append(configCheck(config))
        checks += retention(
            path: retentionPath ?? (try? config.get())?.retentionPath ?? "/mnt/retention",
            config: (try? config.get()) ?? AgentConfig(), files: files)
        checks.append(tlsIdentity(files))
        checks.append(passphrase(files))
        checks.append(service(facts, port: (try? config.get())?.port ?? AgentConfig().port))
        return CheckReport(checks: checks)
    }

    private func loadConfig(_ files: SystemFiles) -> Result<AgentConfig, Error> {
        Result { try AgentConfig.load(from: files) }
    }

    /// Setup has run to the end (no step left mid-apply) and the reboot it asked for happened:
    /// the boot id differs from the one recorded when the change was made.
    private func setupState(_ files: SystemFiles) -> CheckResult {
        guard let bytes = files.read(SetupPaths.state) else {
            return CheckResult(
                id: "setup", status: .fail, message: "mt-agent setup has not been run on this machine",
                fix: "run mt-agent setup --passphrase-file FILE")
        }
        let state: SetupState
        do {
            state = try JSONDecoder().decode(SetupState.self, from: Data(bytes))
        } catch {
            return CheckResult(
                id: "setup", status: .fail, message: "\(SetupPaths.state) is unreadable: \(error)",
                fix: "run mt-agent setup again")
        }
        if let interrupted = state.steps.first(where: { $0.status == .applying }) {
            return CheckResult(
                id: "setup", status: .fail, message: "setup was interrupted in step \(interrupted.id)",
                fix: "run mt-agent setup again; it resumes where it stopped")
        }
        let pending = state.pendingReboot(currentBootID: files.text(SetupPaths.bootID))
        if !pending.isEmpty {
            return CheckResult(
                id: "setup", status: .fail,
                message: "reboot required since setup changed: " + pending.map(\.step).joined(separator: ", "),
                fix: "reboot the VM so that " + pending.map(\.reason).joined(separator: "; "))
        }
        return CheckResult(id: "setup", status: .pass, message: "setup applied (\(state.steps.count) steps); no reboot pending")
    }

    private func configCheck(_ config: Result<AgentConfig, Error>) -> CheckResult {
        switch config {
        case .success:
            CheckResult(id: "config", status: .pass, message: "\(AgentPaths.config) is valid")
        case .failure(let error):
            CheckResult(id: "config", status: .fail, message: "\(error)", fix: "run mt-agent setup, or correct the file")
        }
    }

    private func osSupport(_ files: SystemFiles) -> CheckResult {
        let support = OSSupport.read(from: files)
        if let problem = support.problem {
            return CheckResult(
                id: "os", status: .warn, message: problem,
                fix: "supported: RHEL/CentOS/Rocky/Alma 7–9, Ubuntu 20.04+, Debian 11+")
        }
        return CheckResult(id: "os", status: .pass, message: support.summary)
    }

    private func packages(_ files: SystemFiles) -> CheckResult {
        let missing = RequiredTool.missing(in: files)
        let required = missing.filter(\.required)
        guard !missing.isEmpty else {
            return CheckResult(id: "packages", status: .pass, message: "all required tools are installed")
        }
        let command = OSRelease.read(from: files).flatMap(PackageManager.forRelease).map { manager in
            manager.installCommandLine(missing.map { $0.package(for: manager) })
        }
        return CheckResult(
            id: "packages", status: required.isEmpty ? .warn : .fail,
            message: "missing: " + missing.map(\.executable).joined(separator: ", "),
            fix: command ?? "install the packages that provide them")
    }

    /// The `retention.*` rules of `check retention`, then `retention.churn` from the same facts.
    private func retention(path: String, config: AgentConfig, files: SystemFiles) -> [CheckResult] {
        let live = RetentionInspector.forRoot(root, logger: logger)
        let inspector = RetentionInspector(
            discovery: live.discovery, volumes: volumes, binaryPath: live.binaryPath, probeTimeout: live.probeTimeout)
        let facts: RetentionFacts
        do {
            facts = try inspector.facts(path: path, pairs: 0, targets: [])
        } catch {
            return [
                CheckResult(
                    id: "retention", status: .fail, message: "\(error)",
                    fix: "prepare a retention volume: mt-agent setup --retention-device DEVICE --format ext4"),
                CheckResult(id: RetentionChurn.id, status: .skip, message: "not run: the retention path cannot be checked"),
            ]
        }
        let churn: CheckResult
        if let directory = facts.directory {
            churn = RetentionChurn.evaluate(
                Self.churnFacts(
                    files: files, retentionDirectory: directory, config: config, space: facts.space, pairs: facts.pairs,
                    now: Int64(Date().timeIntervalSince1970)))
        } else {
            churn = CheckResult(id: RetentionChurn.id, status: .skip, message: "not run: \(facts.named) is not mounted")
        }
        return RetentionRules.evaluate(facts) + [churn]
    }

    /// The journal bytes of the last `retention_window`: every `<retention>/mt-agent/journal/
    /// <pair-id>/seg-NNNNNNNN.mtj` whose mtime is within the window, counted at its whole size (an
    /// approximation, see `RetentionChurn`). Paths are on the machine, read under the root.
    static func churnFacts(
        files: SystemFiles, retentionDirectory: String, config: AgentConfig, space: VolumeSpace?, pairs: Int, now: Int64
    ) -> RetentionChurnFacts {
        let journal = Paths.join(retentionDirectory, "mt-agent/journal")
        var facts = RetentionChurnFacts(
            journalDirectory: journal, segments: nil, window: config.retentionWindow.text,
            spacePolicy: config.spacePolicy.rawValue, space: space, pairs: pairs)
        guard let pairDirectories = files.list(journal) else { return facts }
        let since = now - Int64(config.retentionWindow.seconds)
        var segments = 0
        for pair in pairDirectories {
            for name in files.list(Paths.join(journal, pair)) ?? [] where isSegmentName(name) {
                guard let info = HostFile.info(files.hostPath(Paths.join(journal, pair + "/" + name))), info.kind == .file else {
                    continue
                }
                segments += 1
                if Int64(info.mtime.tv_sec) >= since {
                    facts.recentSegments += 1
                    facts.recentBytes += UInt64(max(info.size, 0))
                }
            }
        }
        facts.segments = segments
        return facts
    }

    /// `seg-` + the segment number, 8 decimal digits zero-padded (more past 99999999) + `.mtj`
    /// (docs/JOURNAL.md); not the writer's temporary or probe files.
    static func isSegmentName(_ name: String) -> Bool {
        let bytes = Array(name.utf8)
        guard bytes.count >= 16, name.hasPrefix("seg-"), name.hasSuffix(".mtj") else { return false }
        return bytes[4..<(bytes.count - 4)].allSatisfy { $0 >= UInt8(ascii: "0") && $0 <= UInt8(ascii: "9") }
    }

    private func tlsIdentity(_ files: SystemFiles) -> CheckResult {
        do {
            let identity = try TLSIdentity.load(from: files)
            return CheckResult(id: "tls", status: .pass, message: "TLS identity present; SHA-256 fingerprint \(identity.fingerprint)")
        } catch {
            return CheckResult(id: "tls", status: .fail, message: "\(error)", fix: "run mt-agent setup")
        }
    }

    private func passphrase(_ files: SystemFiles) -> CheckResult {
        do {
            _ = try PassphraseKey.load(from: files)
            return CheckResult(id: "passphrase", status: .pass, message: "passphrase key present (\(AgentPaths.passphraseKey))")
        } catch {
            return CheckResult(id: "passphrase", status: .fail, message: "\(error)", fix: "run mt-agent setup --passphrase-file FILE")
        }
    }

    private func service(_ facts: HostFacts, port: Int) -> CheckResult {
        let running = facts.processRunning("mt-agent", argument: "serve")
        let listening = facts.listening(onTCPPort: port)
        if running && listening {
            return CheckResult(id: "service", status: .pass, message: "mt-agent serve is running and listening on port \(port)")
        }
        return CheckResult(
            id: "service", status: .fail,
            message: running ? "mt-agent serve runs but nothing listens on port \(port)" : "the mt-agent service is not running",
            fix: "systemctl enable --now mt-agent, then journalctl -u mt-agent if it does not stay up")
    }
}
