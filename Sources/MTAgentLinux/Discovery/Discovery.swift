import Dispatch
import Glibc
import Logging
import MTAgentCore

/// Builds the inventory of a machine: enumerate, read each disk's sysfs attributes, probe
/// filesystems, join mounts/swaps/holders, assign roles. Every side effect comes in through the
/// injected `files`, `enumerator` and `prober`.
public struct Discovery: Sendable {
    public let files: SystemFiles
    public let enumerator: BlockDeviceEnumerating
    public let prober: FilesystemProbing
    public let logger: Logger

    public init(files: SystemFiles, enumerator: BlockDeviceEnumerating, prober: FilesystemProbing, logger: Logger) {
        self.files = files
        self.enumerator = enumerator
        self.prober = prober
        self.logger = logger
    }

    /// The ordinary wiring: libudev + libblkid on the live machine; sysfs + libblkid on a `--root` tree.
    public static func forRoot(_ root: String, logger: Logger) -> Discovery {
        let files = RootedFiles(root: root)
        let enumerator: BlockDeviceEnumerating = files.root == "/" ? UdevEnumerator() : SysfsEnumerator(files: files)
        return Discovery(files: files, enumerator: enumerator, prober: BlkidProber(), logger: logger)
    }

    public func inventory() throws -> Inventory {
        if files.root != "/" {
            var st = stat()
            if stat(files.root, &st) == 0 && (st.st_mode & S_IFMT) == S_IFREG {
                throw DiscoveryError.notASystemTree(
                    root: files.root,
                    reason: "it is a file; if it is a 'collect' tarball, extract it first: mkdir DIR && tar -xzf \(files.root) -C DIR")
            }
            for required in ["/sys/class/block", "/proc"] where !files.exists(required) {
                throw DiscoveryError.notASystemTree(root: files.root, reason: "\(files.hostPath(required)) is missing")
            }
        }
        let entries = try enumerator.enumerate()
        let reader = DiskReader(files: files)
        var warnings: [String] = []

        // Read sysfs first, then probe every device at once: probes wait on device I/O.
        var found: [(entry: BlockDeviceEntry, disk: Disk?, partition: Partition?)] = []
        for entry in entries {
            if entry.isPartition {
                guard entry.parent != nil, let part = reader.partition(entry) else {
                    vanished(entry)
                    continue
                }
                found.append((entry, nil, part))
            } else {
                guard let disk = reader.disk(entry) else {
                    vanished(entry)
                    continue
                }
                // Unattached loop devices and empty ram disks have no content worth listing.
                if disk.sizeBytes == 0 && [.loop, .ram, .zram].contains(disk.transport) { continue }
                found.append((entry, disk, nil))
            }
        }
        let probes = probeAll(found.map(\.entry.name))

        var partitionsByDisk: [String: [Partition]] = [:]
        var disks: [Disk] = []
        for (item, probe) in zip(found, probes) {
            if var disk = item.disk {
                if let r = outcome(probe, name: item.entry.name, warnings: &warnings, itemWarnings: &disk.warnings) { disk.apply(r) }
                disks.append(disk)
            } else if var part = item.partition, let parent = item.entry.parent {
                var ignored: [String] = []
                if let r = outcome(probe, name: item.entry.name, warnings: &warnings, itemWarnings: &ignored) { part.apply(r) }
                partitionsByDisk[parent, default: []].append(part)
            }
        }

        let mounts = readMounts(&warnings)
        let swaps = readSwaps(disks: disks, &warnings)
        disks = disks.map { disk in
            var disk = disk
            disk.partitions = (partitionsByDisk[disk.name] ?? [])
                .sorted { ($0.number ?? 0, $0.name) < ($1.number ?? 0, $1.name) }
                .map { part in
                    var part = part
                    part.mountpoints = mounts.points(devno: part.devno, name: part.name)
                    part.swap = swaps.contains(part.name)
                    return part
                }
            disk.mountpoints = mounts.points(devno: disk.devno, name: disk.name)
            disk.swap = swaps.contains(disk.name)
            return disk
        }
        disks = RoleRules.assignRoles(disks).sorted(by: Self.naturalOrder)
        return Inventory(host: HostReader(files: files).host(source: enumerator.source), disks: disks, warnings: warnings)
    }

    /// A device without a `dev` attribute either vanished since it was listed, or is a hidden
    /// kernel device with no device node (an NVMe multipath path such as `nvme1c1n1`).
    private func vanished(_ entry: BlockDeviceEntry) {
        if files.exists(entry.sysPath) {
            logger.debug("block device has no device node; skipped", metadata: ["disk.name": "\(entry.name)"])
        } else {
            logger.warning("block device disappeared during enumeration; skipped", metadata: ["disk.name": "\(entry.name)"])
        }
    }

    private func probePath(_ name: String) -> String? {
        let devnode = "/dev/" + name.split(separator: "!").joined(separator: "/")
        if files.root == "/" { return devnode }
        return files.exists(devnode) ? files.hostPath(devnode) : nil
    }

    /// libblkid's view of each named device, probed in parallel; nil where there is no device
    /// node to probe (a `--root` tree without `dev/`).
    private func probeAll(_ names: [String]) -> [Result<ProbeResult, ProbeError>?] {
        let paths = names.map(probePath)
        let results = ProbeResults(count: paths.count)
        DispatchQueue.concurrentPerform(iterations: paths.count) { i in
            results[i] = paths[i].map { prober.probe(path: $0) }
        }
        return results.values
    }

    /// The probe's result, or nil with the failure recorded as a warning.
    private func outcome(
        _ probe: Result<ProbeResult, ProbeError>?, name: String, warnings: inout [String], itemWarnings: inout [String]
    ) -> ProbeResult? {
        switch probe {
        case .success(let result):
            return result
        case .failure(let error):
            record(error, name: name, warnings: &warnings, diskWarnings: &itemWarnings)
            return nil
        case nil:
            return nil
        }
    }

    private func record(_ error: ProbeError, name: String, warnings: inout [String], diskWarnings: inout [String]) {
        if case .permissionDenied = error, geteuid() != 0 {
            let line = "filesystem details (fsType, uuid, label) need root to open block devices: run mt-agent as root"
            if !warnings.contains(line) { warnings.append(line) }
        } else if case .cannotOpen(_, let e) = error, e == 123 /* ENOMEDIUM: empty CD drive */ {
            return
        } else {
            diskWarnings.append("\(name): \(error)")
            logger.debug("blkid probe failed", metadata: ["disk.name": "\(name)", "error": "\(error)"])
        }
    }

    private struct Mounts {
        var byDevno: [String: [String]] = [:]
        var bySourceName: [String: [String]] = [:]

        /// btrfs and other multi-device filesystems report an anonymous 0:N device number, so
        /// those are matched by their mount source instead.
        func points(devno: String, name: String) -> [String] {
            (byDevno[devno] ?? bySourceName[name] ?? []).sorted()
        }
    }

    private func readMounts(_ warnings: inout [String]) -> Mounts {
        guard let text = files.text("/proc/self/mountinfo") else {
            warnings.append("cannot read /proc/self/mountinfo: mount points are not shown")
            return Mounts()
        }
        var mounts = Mounts()
        for entry in MountInfo.parse(text) {
            if entry.devno.hasPrefix("0:") {
                if entry.source.hasPrefix("/dev/") {
                    mounts.bySourceName[Paths.basename(entry.source), default: []].append(entry.mountPoint)
                }
            } else {
                mounts.byDevno[entry.devno, default: []].append(entry.mountPoint)
            }
        }
        return mounts
    }

    /// Names of the block devices in use as swap (`/dev/sda2`, `/dev/dm-1`, `/dev/mapper/vg-swap`).
    private func readSwaps(disks: [Disk], _ warnings: inout [String]) -> Set<String> {
        guard let text = files.text("/proc/swaps") else {
            warnings.append("cannot read /proc/swaps: swap devices are not shown")
            return []
        }
        let dmNames = Dictionary(disks.compactMap { d in d.dmName.map { ($0, d.name) } }, uniquingKeysWith: { a, _ in a })
        return Set(
            Swaps.parse(text).filter { $0.type == "partition" }.compactMap { swap in
                let name = Paths.basename(swap.filename)
                return swap.filename.hasPrefix("/dev/mapper/") ? dmNames[name] : name
            })
    }

    /// SCSI disks first, then virtio, NVMe, …; within a family sda…sdz before sdaa, nvme0n2 before nvme0n10.
    static func naturalOrder(_ a: Disk, _ b: Disk) -> Bool {
        let families = ["sd", "vd", "xvd", "hd", "nvme", "sr", "dm-", "md", "loop", "zram", "ram"]
        func key(_ s: String) -> (Int, Int, String) {
            let family = families.firstIndex { s.hasPrefix($0) } ?? families.count
            return (family, s.count, s)
        }
        return key(a.name) < key(b.name)
    }
}

/// One slot per probe; each concurrent iteration writes only its own index.
private final class ProbeResults: @unchecked Sendable {
    private var slots: [Result<ProbeResult, ProbeError>?]
    private let lock = Lock()

    init(count: Int) { slots = Array(repeating: nil, count: count) }

    subscript(index: Int) -> Result<ProbeResult, ProbeError>? {
        get { lock.withLock { slots[index] } }
        set { lock.withLock { slots[index] = newValue } }
    }

    var values: [Result<ProbeResult, ProbeError>?] { lock.withLock { slots } }
}
