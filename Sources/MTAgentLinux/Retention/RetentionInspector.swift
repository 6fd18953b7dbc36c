import Logging
import MTAgentCore

/// Gathers what `RetentionRules` decide on — the mount holding the path, the disk or partition
/// under it (from the discovery inventory), libblkid's view of a named device, statvfs, and a
/// write + fsync probe — and returns the rules' results. `check retention`, `setup` and
/// `preflight` all call `check(path:pairs:targets:)`.
public struct RetentionInspector: Sendable {
    public static let defaultProbeTimeout: Duration = .seconds(5)
    /// mt-agent's state directory on the machine (under `--root`, inside the root).
    public static let stateDirectory = "/var/lib/mt-agent"

    public let discovery: Discovery
    public let volumes: VolumeProbing
    /// The running binary, which is mt-agent's install; nil under a non-`/` root, where the
    /// running binary is not the one installed on that machine.
    public let binaryPath: String?
    public let probeTimeout: Duration

    public init(
        discovery: Discovery, volumes: VolumeProbing = LiveVolumes(), binaryPath: String?,
        probeTimeout: Duration = defaultProbeTimeout
    ) {
        self.discovery = discovery
        self.volumes = volumes
        self.binaryPath = binaryPath
        self.probeTimeout = probeTimeout
    }

    /// The ordinary wiring: discovery of the root, live stat/statvfs/probe, the running binary.
    public static func forRoot(_ root: String, logger: Logger, probeTimeout: Duration = defaultProbeTimeout) -> RetentionInspector {
        let discovery = Discovery.forRoot(root, logger: logger)
        let binary = discovery.files.root == "/" ? RootedFiles(root: "/").resolve("/proc/self/exe") : nil
        return RetentionInspector(discovery: discovery, binaryPath: binary, probeTimeout: probeTimeout)
    }

    var files: SystemFiles { discovery.files }

    /// One result per retention rule. Throws `RetentionError` (or discovery's error) when the
    /// check cannot run at all, e.g. the path does not exist.
    public func check(path: String = RetentionRules.defaultPath, pairs: Int = 0, targets: [String] = []) throws -> [CheckResult] {
        RetentionRules.evaluate(try facts(path: path, pairs: pairs, targets: targets))
    }

    /// `targets` are disk names, device nodes or WWIDs; each may be a comma-separated list.
    public func facts(path: String, pairs: Int, targets: [String]) throws -> RetentionFacts {
        let machinePath = Paths.normalize(path.hasPrefix("/") ? path : Paths.currentDirectory() + "/" + path)
        var facts = RetentionFacts(named: path, directory: nil, mounts: [], disks: [])
        switch volumes.kind(of: files.hostPath(machinePath)) {
        case .missing:
            throw RetentionError.missing(path)
        case .inaccessible(let why):
            throw RetentionError.inaccessible(path, reason: why)
        case .other:
            throw RetentionError.notADirectoryOrDevice(path)
        case .directory:
            facts.directory = files.resolve(machinePath) ?? machinePath
        case .blockDevice(let devno):
            facts.deviceDevno = devno
            switch discovery.prober.probe(path: files.hostPath(machinePath)) {
            case .success(let probe): facts.blkid = probe
            case .failure(let error): facts.blkidError = "\(error)"
            }
        }

        guard let mountinfo = files.text("/proc/self/mountinfo") else {
            throw RetentionError.cannotRead(files.hostPath("/proc/self/mountinfo"))
        }
        facts.mounts = MountInfo.parse(mountinfo)
        facts.disks = try discovery.inventory().disks
        if let devno = facts.deviceDevno {
            facts.directory = RetentionRules.mountPoint(ofDevno: devno, in: facts.mounts)
        }
        if let directory = facts.directory {
            do {
                facts.space = try volumes.space(of: files.hostPath(directory))
            } catch {
                facts.spaceError = "\(error)"
            }
        }
        facts.cacheLocations = cacheLocations()
        facts.targets = targets.flatMap { $0.split(separator: ",").map { String($0).trimmingWhitespace() } }.filter { !$0.isEmpty }
        facts.pairs = pairs

        if RetentionRules.probeSkipReason(facts) == nil, let directory = facts.directory {
            facts.writeProbe = volumes.writeProbe(in: files.hostPath(directory), timeout: probeTimeout)
            discovery.logger.debug("retention write probe", metadata: ["path": "\(directory)", "outcome": "\(facts.writeProbe!)"])
        }
        return facts
    }

    private func cacheLocations() -> [CacheLocation] {
        var locations: [CacheLocation] = []
        if let binaryPath { locations.append(CacheLocation(what: "install", path: binaryPath)) }
        locations.append(CacheLocation(what: "state", path: resolveExisting(Self.stateDirectory)))
        return locations
    }

    /// The path with symlinks resolved as far as it exists: before setup creates
    /// /var/lib/mt-agent, the state will live wherever /var/lib is.
    private func resolveExisting(_ path: String) -> String {
        var head = path
        var tail: [String] = []
        while true {
            if let resolved = files.resolve(head) {
                return tail.isEmpty ? resolved : Paths.join(resolved, tail.reversed().joined(separator: "/"))
            }
            if head == "/" { return path }
            tail.append(Paths.basename(head))
            head = Paths.dirname(head)
        }
    }
}

/// Why a retention check could not run (exit 2), as opposed to a rule that failed (exit 1).
public enum RetentionError: Error, Equatable, CustomStringConvertible {
    case missing(String)
    case inaccessible(String, reason: String)
    case notADirectoryOrDevice(String)
    case cannotRead(String)

    public var description: String {
        switch self {
        case .missing(let p):
            "retention path \(p) does not exist: mount a dedicated volume there (mkdir -p \(p), then mount it), "
                + "or name the retention directory or device"
        case .inaccessible(let p, let why):
            "cannot look at retention path \(p): \(why)"
        case .notADirectoryOrDevice(let p):
            "retention path \(p) is neither a directory nor a block device"
        case .cannotRead(let p):
            "cannot read \(p): the mounts cannot be checked"
        }
    }
}
