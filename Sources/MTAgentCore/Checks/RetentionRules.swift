/// What `check retention` knows about one volume. MTAgentLinux's `RetentionInspector` gathers
/// it; `RetentionRules` decides from it alone, so every rule is tested without a machine.
public struct RetentionFacts: Sendable, Equatable {
    /// The directory or block device as the admin named it, for messages.
    public var named: String
    /// The directory the journal would live in, symlinks resolved, as a path on the machine: the
    /// named directory, or the named device's mount point; nil for a device that is not mounted.
    public var directory: String?
    /// `major:minor` of the named block device; nil when a directory was named.
    public var deviceDevno: String?
    /// Every mount of the machine in `/proc/self/mountinfo` order.
    public var mounts: [MountEntry]
    /// The machine's disks, to map the volume's `major:minor` to a disk or partition.
    public var disks: [Disk]
    /// libblkid on the named device. For a named directory the inventory's probe of the mounted
    /// device is used instead.
    public var blkid: ProbeResult?
    public var blkidError: String?
    /// statvfs of `directory`.
    public var space: VolumeSpace?
    public var spaceError: String?
    /// nil when the probe was not run (`RetentionRules.probeSkipReason` says why).
    public var writeProbe: WriteProbeOutcome?
    /// Where mt-agent's own install and state are, symlinks resolved.
    public var cacheLocations: [CacheLocation]
    /// Disks assigned to pairs as replication targets: kernel names, device nodes or WWIDs.
    public var targets: [String]
    public var pairs: Int

    public init(
        named: String, directory: String?, deviceDevno: String? = nil, mounts: [MountEntry], disks: [Disk],
        blkid: ProbeResult? = nil, blkidError: String? = nil, space: VolumeSpace? = nil, spaceError: String? = nil,
        writeProbe: WriteProbeOutcome? = nil, cacheLocations: [CacheLocation] = [], targets: [String] = [], pairs: Int = 0
    ) {
        self.named = named
        self.directory = directory
        self.deviceDevno = deviceDevno
        self.mounts = mounts
        self.disks = disks
        self.blkid = blkid
        self.blkidError = blkidError
        self.space = space
        self.spaceError = spaceError
        self.writeProbe = writeProbe
        self.cacheLocations = cacheLocations
        self.targets = targets
        self.pairs = pairs
    }
}

/// statvfs(3) of a volume, in bytes.
public struct VolumeSpace: Sendable, Equatable {
    public var totalBytes: UInt64
    /// What an unprivileged writer may still use (`f_bavail`): ext4 keeps its root reserve out of it.
    public var availableBytes: UInt64
    /// `ST_RDONLY`: read-only for whatever reason (mount option, or the kernel after errors).
    public var readOnly: Bool

    public init(totalBytes: UInt64, availableBytes: UInt64, readOnly: Bool) {
        self.totalBytes = totalBytes
        self.availableBytes = availableBytes
        self.readOnly = readOnly
    }
}

/// A write + fsync of a small file in the volume.
public enum WriteProbeOutcome: Sendable, Equatable {
    case succeeded(Duration)
    /// What went wrong, e.g. `dd: failed to open '…': Permission denied`.
    case failed(String)
    /// It did not finish within this long: the filesystem is frozen or its device stalls.
    case timedOut(Duration)
}

public struct CacheLocation: Sendable, Equatable {
    /// "install" or "state".
    public var what: String
    public var path: String

    public init(what: String, path: String) {
        self.what = what
        self.path = path
    }
}

/// `check retention`: whether a volume may hold the retention journal (DESIGN §4). One result
/// per rule, in a fixed order, each failure naming its fix.
public enum RetentionRules {
    public static let defaultPath = "/mnt/retention"
    /// Reserved per pair, and four times over for the journal's own catalog and headroom.
    public static let reserveBytes: UInt64 = 256 << 20

    /// FAT has a 4 GiB file limit, no journal and no permissions: journal segments could neither
    /// grow nor survive a crash, and the key files could not be kept private.
    static let fatTypes: Set<String> = ["vfat", "msdos", "fat", "exfat"]
    static let memoryTypes: Set<String> = ["tmpfs", "ramfs"]

    public static func requiredFreeBytes(pairs: Int) -> UInt64 {
        reserveBytes * UInt64(max(pairs, 0) + 4)
    }

    public static func evaluate(_ facts: RetentionFacts) -> [CheckResult] {
        let v = RetentionVolume(facts)
        return [
            mounted(v), filesystem(v), systemVolume(v), cacheVolume(v), replicationTarget(v), holders(v),
            capacity(v), freeSpace(v), writable(v), writeProbe(v),
        ]
    }

    /// Why the write probe must not run, or nil when it may: nothing is written to a volume that
    /// is not the retention volume's own, or that cannot take a write anyway.
    public static func probeSkipReason(_ facts: RetentionFacts) -> String? {
        let v = RetentionVolume(facts)
        guard v.facts.directory != nil, let mount = v.mount else { return "\(facts.named) is not mounted" }
        if !v.isMountPoint { return "\(v.directory) is not a volume of its own" }
        if v.systemMount != nil { return "nothing is written to the system volume" }
        if !v.cacheHits.isEmpty { return "nothing is written to the volume holding mt-agent's own files" }
        if mount.readOnly || facts.space?.readOnly == true { return "the volume is read-only" }
        return nil
    }

    /// Where a named device is mounted: its first mount in mountinfo order.
    public static func mountPoint(ofDevno devno: String, in mounts: [MountEntry]) -> String? {
        mounts.first { $0.devno == devno }?.mountPoint
    }

    // MARK: - Rules

    static func dedicatedVolumeFix(_ path: String) -> String {
        "mount a dedicated volume at \(path) (a disk or partition of its own, formatted ext4 or xfs, "
            + "e.g. mkfs.ext4 /dev/sdX1, and listed in /etc/fstab)"
    }

    static func mounted(_ v: RetentionVolume) -> CheckResult {
        let id = "retention.mounted"
        if let device = v.namedDevice {
            guard let dir = v.facts.directory else {
                return CheckResult(
                    id: id, status: .fail, message: "\(device) is not mounted",
                    fix: "mount it: mkdir -p \(RetentionRules.defaultPath) && mount \(device) \(RetentionRules.defaultPath), "
                        + "and add it to /etc/fstab so it is mounted at boot",
                    subjects: v.subjects())
            }
            return CheckResult(id: id, status: .pass, message: "\(device) is mounted at \(dir)", subjects: v.subjects())
        }
        guard let mount = v.mount else {
            return CheckResult(
                id: id, status: .fail, message: "no mount holds \(v.directory) (is /proc/self/mountinfo readable?)",
                fix: dedicatedVolumeFix(v.fixPath))
        }
        if v.isMountPoint {
            return CheckResult(
                id: id, status: .pass,
                message: "\(v.directory) is a mount point of its own (\(mount.fsType) on \(mount.source))",
                subjects: v.subjects())
        }
        let on = "\(mount.mountPoint) (\(mount.source))"
        let message = v.systemMount != nil
            ? "\(v.directory) is a directory on the system volume \(on), not a volume of its own"
            : "\(v.directory) is a directory on \(on), not a volume of its own"
        return CheckResult(id: id, status: .fail, message: message, fix: dedicatedVolumeFix(v.fixPath), subjects: v.subjects())
    }

    static func filesystem(_ v: RetentionVolume) -> CheckResult {
        let id = "retention.filesystem"
        let named = v.namedDevice ?? v.directory
        let devnode = v.located?.devnode ?? v.namedDevice ?? "/dev/sdX1"
        let types = [v.mount?.fsType, v.probedType].compactMap { $0 }
        if let fat = types.first(where: fatTypes.contains) {
            let family = fat == "exfat" ? "exFAT" : "FAT/FAT32"
            return CheckResult(
                id: id, status: .fail,
                message: "retention volume \(named) is \(fat); \(family) volumes cannot hold the journal — format it ext4 or xfs",
                fix: "copy off anything it holds, then format it: mkfs.ext4 \(devnode) (or mkfs.xfs \(devnode)), "
                    + "and mount it at \(v.fixPath)",
                subjects: v.subjects(detail: fat))
        }
        if let memory = types.first(where: memoryTypes.contains) {
            return CheckResult(
                id: id, status: .fail,
                message: "\(named) is \(memory), held in memory: the journal would be lost at every reboot",
                fix: dedicatedVolumeFix(v.fixPath))
        }
        if let device = v.namedDevice, let blkid = v.facts.blkid {
            if let usage = blkid.usage, usage != "filesystem" {
                let type = blkid.fsType ?? usage
                return CheckResult(
                    id: id, status: .fail, message: "\(device) holds \(type) (\(usage)), not a filesystem",
                    fix: "choose a device that is not in use: formatting \(device) would destroy its \(type)",
                    subjects: v.subjects(detail: type))
            }
            if blkid.fsType == nil {
                if let table = blkid.partitionTable {
                    return CheckResult(
                        id: id, status: .fail, message: "\(device) holds a \(table.type) partition table, not a filesystem",
                        fix: "name one of its partitions instead, or format a partition (mkfs.ext4) and mount that",
                        subjects: v.subjects(detail: "\(table.type) partition table"))
                }
                return CheckResult(
                    id: id, status: .fail, message: "\(device) has no filesystem",
                    fix: "format it: mkfs.ext4 \(device) (or mkfs.xfs \(device)), then mount it at \(defaultPath)",
                    subjects: v.subjects(detail: "no filesystem"))
            }
        }
        guard let type = types.first else {
            return CheckResult(
                id: id, status: .fail,
                message: "cannot tell which filesystem \(named) holds" + (v.facts.blkidError.map { ": \($0)" } ?? ""),
                fix: "run mt-agent as root so that libblkid can read the device")
        }
        return CheckResult(id: id, status: .pass, message: "\(named) is \(type)", subjects: v.subjects(detail: type))
    }

    static func systemVolume(_ v: RetentionVolume) -> CheckResult {
        let id = "retention.system-volume"
        if let system = v.systemMount {
            return CheckResult(
                id: id, status: .fail,
                message: "\(v.named) is on the system volume (\(system.fsType) on \(system.source), mounted at \(system.mountPoint))",
                fix: "keep the journal off the system's filesystem, which it would fill: " + dedicatedVolumeFix(v.fixPath),
                subjects: v.subjects(detail: "system volume"))
        }
        if let located = v.located, located.partition == nil, located.disk.role == .system {
            return CheckResult(
                id: id, status: .fail, message: "\(located.name) is the system disk",
                fix: "use a disk of its own for retention", subjects: v.subjects(detail: "system disk"))
        }
        let shared = v.baseDisks.filter { $0.role == .system }
        if !shared.isEmpty {
            let names = shared.map(\.name).joined(separator: ", ")
            return CheckResult(
                id: id, status: .warn,
                message: "\(v.named) is not the system volume but shares disk \(names) with it",
                fix: "the journal and the system will compete for that disk; a disk of its own for retention is recommended",
                subjects: shared.map { CheckResult.Subject($0, detail: "also holds the system") })
        }
        let root = v.lastMount(at: "/").map { " (/ is \($0.source))" } ?? ""
        return CheckResult(id: id, status: .pass, message: "not the system volume\(root)", subjects: v.subjects())
    }

    static func cacheVolume(_ v: RetentionVolume) -> CheckResult {
        let id = "retention.cache-volume"
        let hits = v.cacheHits
        if !hits.isEmpty {
            let what = hits.map { "\($0.what) (\($0.path))" }.joined(separator: " and ")
            return CheckResult(
                id: id, status: .fail,
                message: "\(v.named) is on the volume holding mt-agent's own \(what)",
                fix: "keep the journal off the volume of mt-agent's own files: " + dedicatedVolumeFix(v.fixPath),
                subjects: v.subjects(detail: "cache volume"))
        }
        let places = v.facts.cacheLocations.map(\.path).joined(separator: ", ")
        return CheckResult(
            id: id, status: .pass,
            message: places.isEmpty ? "no mt-agent files to compare with" : "mt-agent's own files are elsewhere (\(places))")
    }

    static func replicationTarget(_ v: RetentionVolume) -> CheckResult {
        let id = "retention.replication-target"
        guard !v.facts.targets.isEmpty else {
            return CheckResult(id: id, status: .pass, message: "no disk is assigned as a replication target")
        }
        let wanted = Set(v.facts.targets.map { $0.hasPrefix("/dev/") ? String($0.dropFirst(5)) : $0 })
        let hit = v.baseDisks.filter { d in
            wanted.contains(d.name) || d.wwid.map(wanted.contains) == true
        }
        if !hit.isEmpty {
            let names = hit.map(\.name).joined(separator: ", ")
            return CheckResult(
                id: id, status: .fail,
                message: "\(v.named) is on \(names), assigned as a replication target: replicated writes would overwrite the journal",
                fix: "put retention on a disk no pair uses, or assign another target disk in place of \(names)",
                subjects: hit.map { CheckResult.Subject($0, detail: "replication target") })
        }
        return CheckResult(
            id: id, status: .pass,
            message: "not on a replication target (\(v.facts.targets.sorted().joined(separator: ", ")))")
    }

    static func holders(_ v: RetentionVolume) -> CheckResult {
        let id = "retention.holders"
        guard let located = v.located else {
            return CheckResult(id: id, status: .skip, message: "\(v.named) is on no block device of this machine")
        }
        let disk = located.disk
        let below = v.baseDisks.map(\.name).joined(separator: ", ")
        if located.partition == nil, disk.transport == .dm {
            let name = disk.dmName.map { "\($0) (\(disk.name))" } ?? disk.name
            if disk.dmUUID?.hasPrefix("LVM-") == true {
                return CheckResult(
                    id: id, status: .warn, message: "retention on LVM: logical volume \(name) on \(below)",
                    fix: "mt-agent's setup stops LVM auto-activation for replicated disks; make sure this volume group "
                        + "is still activated at boot, or use a plain partition for retention",
                    subjects: v.subjects(detail: "LVM logical volume"))
            }
            return CheckResult(
                id: id, status: .fail,
                message: "\(v.named) is on device-mapper device \(name)" + (disk.dmUUID.map { " (\($0))" } ?? "") + " over \(below)",
                fix: stackedFix, subjects: v.subjects(detail: "device-mapper"))
        }
        if located.partition == nil, disk.transport == .md {
            return CheckResult(
                id: id, status: .fail, message: "\(v.named) is on md RAID \(disk.name) over \(below)",
                fix: stackedFix, subjects: v.subjects(detail: "md RAID"))
        }
        var held: [String] = []
        if let part = located.partition, !part.holders.isEmpty {
            held.append("\(part.name) is held by \(part.holders.joined(separator: ", "))")
        }
        if !disk.holders.isEmpty {
            held.append("its disk \(disk.name) is held by \(v.describe(disk.holders))")
        }
        if !held.isEmpty {
            return CheckResult(
                id: id, status: .fail, message: "\(v.named): " + held.joined(separator: "; "),
                fix: "a device held by device-mapper or md (multipath, RAID, crypt) is written behind their back: "
                    + "release it (multipath -f, mdadm --stop, dmsetup remove) or choose another volume",
                subjects: v.subjects(detail: "held"))
        }
        return CheckResult(id: id, status: .pass, message: "\(located.name) is held by nothing else", subjects: v.subjects())
    }

    static let stackedFix = """
        replicated disks carry the source machines' RAID and LVM metadata, so mt-agent keeps md and \
        device-mapper away from every disk but its own; a volume stacked on them may not come up at boot. \
        Use a plain partition or disk (or an LVM logical volume) for retention
        """

    static func capacity(_ v: RetentionVolume) -> CheckResult {
        let id = "retention.capacity"
        guard let space = v.facts.space else { return v.noSpace(id) }
        if space.totalBytes == 0 {
            return CheckResult(
                id: id, status: .fail, message: "\(v.directory) has no capacity (statvfs reports 0 blocks)",
                fix: dedicatedVolumeFix(v.fixPath), subjects: v.subjects())
        }
        return CheckResult(id: id, status: .pass, message: "capacity \(size(space.totalBytes))", subjects: v.subjects())
    }

    static func freeSpace(_ v: RetentionVolume) -> CheckResult {
        let id = "retention.free-space"
        guard let space = v.facts.space else { return v.noSpace(id) }
        let pairs = max(v.facts.pairs, 0)
        let needed = requiredFreeBytes(pairs: pairs)
        let formula = "256 MiB × (\(pairs) pair\(pairs == 1 ? "" : "s") + 4)"
        if space.availableBytes < needed {
            return CheckResult(
                id: id, status: .fail,
                message: "\(v.directory) has \(size(space.availableBytes)) free; it needs \(size(needed)) (\(formula))",
                fix: "free \(size(needed - space.availableBytes)) on it, or mount a larger volume: "
                    + "retention needs 256 MiB per pair plus 1 GiB",
                subjects: v.subjects())
        }
        return CheckResult(
            id: id, status: .pass,
            message: "\(size(space.availableBytes)) free of \(size(space.totalBytes)); \(size(needed)) needed (\(formula))",
            subjects: v.subjects())
    }

    static func writable(_ v: RetentionVolume) -> CheckResult {
        let id = "retention.writable"
        guard let space = v.facts.space else { return v.noSpace(id) }
        var reasons: [String] = []
        if v.mount?.readOnly == true { reasons.append("mounted read-only (ro)") }
        if space.readOnly && v.mount?.readOnly != true { reasons.append("the filesystem is read-only") }
        if let located = v.located, located.disk.readOnly {
            reasons.append("its device \(located.disk.name) is read-only")
        }
        if !reasons.isEmpty {
            return CheckResult(
                id: id, status: .fail, message: "\(v.directory) is " + reasons.joined(separator: "; "),
                fix: "remount it read-write: mount -o remount,rw \(v.mount?.mountPoint ?? v.directory), and drop 'ro' from its "
                    + "/etc/fstab entry; if the kernel made it read-only after I/O errors, check dmesg and repair it first",
                subjects: v.subjects(detail: "read-only"))
        }
        return CheckResult(id: id, status: .pass, message: "mounted read-write", subjects: v.subjects())
    }

    static func writeProbe(_ v: RetentionVolume) -> CheckResult {
        let id = "retention.write-probe"
        guard let outcome = v.facts.writeProbe else {
            return CheckResult(id: id, status: .skip, message: "not run: " + (probeSkipReason(v.facts) ?? "not requested"))
        }
        switch outcome {
        case .succeeded(let took):
            return CheckResult(
                id: id, status: .pass, message: "a 4 KiB write + fsync in \(v.directory) took \(milliseconds(took))",
                subjects: v.subjects())
        case .failed(let why):
            return CheckResult(
                id: id, status: .fail, message: "a 4 KiB write + fsync in \(v.directory) failed: \(why)",
                fix: "make \(v.directory) writable (mt-agent runs as root) and look for I/O errors in dmesg, then run this check again",
                subjects: v.subjects())
        case .timedOut(let limit):
            return CheckResult(
                id: id, status: .fail,
                message: "a 4 KiB write + fsync in \(v.directory) did not finish within \(milliseconds(limit)): "
                    + "the filesystem is frozen (locked) or its device has stalled",
                fix: "if it was frozen (fsfreeze -f, a backup or snapshot tool), thaw it: fsfreeze -u \(v.directory); "
                    + "otherwise look for a stalled device in dmesg; then run this check again",
                subjects: v.subjects(detail: "frozen or stalled"))
        }
    }

    // MARK: - Formatting

    /// Binary units with one decimal from GiB up: "200 MiB", "1.0 GiB".
    static func size(_ bytes: UInt64) -> String {
        if bytes >= 1 << 30 {
            let tenths = (bytes * 10 + (1 << 29)) >> 30
            return "\(tenths / 10).\(tenths % 10) GiB"
        }
        if bytes >= 1 << 20 { return "\((bytes + (1 << 19)) >> 20) MiB" }
        if bytes >= 1 << 10 { return "\((bytes + (1 << 9)) >> 10) KiB" }
        return "\(bytes) bytes"
    }

    static func milliseconds(_ d: Duration) -> String {
        let (seconds, attoseconds) = d.components
        let ms = seconds * 1000 + attoseconds / 1_000_000_000_000_000
        return ms >= 1000 && ms % 1000 == 0 ? "\(ms / 1000) s" : "\(ms) ms"
    }
}

/// The facts seen from the volume: which mount and which block device the journal would be on.
struct RetentionVolume {
    let facts: RetentionFacts
    /// The mount that holds `directory`.
    let mount: MountEntry?
    let isMountPoint: Bool
    let located: Located?
    /// The whole disks at the bottom: the disk itself, a partition's disk, dm/md slaves followed down.
    let baseDisks: [Disk]

    struct Located {
        var disk: Disk
        var partition: Partition?
        var name: String { partition?.name ?? disk.name }
        var devnode: String { partition?.devnode ?? disk.devnode }
        var fsType: String? { partition == nil ? disk.fsType : partition?.fsType }
    }

    init(_ facts: RetentionFacts) {
        self.facts = facts
        let mount = facts.directory.flatMap { RetentionVolume.mount(containing: $0, in: facts.mounts) }
        self.mount = mount
        isMountPoint = mount != nil && mount?.mountPoint == facts.directory
        located = RetentionVolume.locate(devno: mount?.devno ?? facts.deviceDevno, source: mount?.source, in: facts.disks)
        baseDisks = located.map { RetentionVolume.bottom(of: $0.disk, in: facts.disks) } ?? []
    }

    var namedDevice: String? { facts.deviceDevno == nil ? nil : facts.named }
    var directory: String { facts.directory ?? facts.named }
    /// How messages name the volume: the directory, or the device when it is not mounted.
    var named: String { facts.directory ?? facts.named }
    /// Where the fix says to mount a volume: the directory checked, unless it is / or another
    /// system mount point, or there is none.
    var fixPath: String {
        guard let dir = facts.directory, !RoleRules.systemMountPoints.contains(dir) else { return RetentionRules.defaultPath }
        return dir
    }
    var probedType: String? { facts.blkid?.fsType ?? (namedDevice == nil ? located?.fsType : nil) }

    /// The mount at a system mount point (/, /boot, /usr, /var …) that is this same filesystem.
    var systemMount: MountEntry? {
        guard let mount else { return nil }
        let system = RoleRules.systemMountPoints.sorted().compactMap(lastMount(at:))
        return system.first { RetentionVolume.sameFilesystem($0, mount) }
    }

    var cacheHits: [CacheLocation] {
        guard let mount else { return [] }
        return facts.cacheLocations.filter { loc in
            RetentionVolume.mount(containing: loc.path, in: facts.mounts).map { RetentionVolume.sameFilesystem($0, mount) } ?? false
        }
    }

    func lastMount(at point: String) -> MountEntry? { facts.mounts.last { $0.mountPoint == point } }

    func subjects(detail: String? = nil) -> [CheckResult.Subject] {
        guard let located else { return [] }
        return [CheckResult.Subject(name: located.name, hctl: located.disk.hctl, wwid: located.disk.wwid, detail: detail)]
    }

    /// "dm-0 (mpath-36000…)" for holders with a device-mapper uuid.
    func describe(_ names: [String]) -> String {
        names.map { name in
            facts.disks.first { $0.name == name }?.dmUUID.map { "\(name) (\($0))" } ?? name
        }.joined(separator: ", ")
    }

    func noSpace(_ id: String) -> CheckResult {
        if facts.directory == nil {
            return CheckResult(id: id, status: .skip, message: "not run: \(facts.named) is not mounted")
        }
        return CheckResult(id: id, status: .skip, message: "not run: " + (facts.spaceError ?? "no statvfs of \(directory)"))
    }

    /// The mount a path lives on: the longest mount point that is the path or one of its
    /// ancestors; of mounts stacked on one point, the last listed (the one on top).
    static func mount(containing path: String, in mounts: [MountEntry]) -> MountEntry? {
        var best: MountEntry?
        for m in mounts where contains(m.mountPoint, path) {
            if best == nil || m.mountPoint.count >= best!.mountPoint.count { best = m }
        }
        return best
    }

    static func contains(_ mountPoint: String, _ path: String) -> Bool {
        mountPoint == "/" || path == mountPoint || path.hasPrefix(mountPoint + "/")
    }

    /// One filesystem: the same device number (bind mounts included), or for btrfs subvolumes,
    /// which get an anonymous 0:N each, the same source device.
    static func sameFilesystem(_ a: MountEntry, _ b: MountEntry) -> Bool {
        if a.devno == b.devno { return true }
        return a.devno.hasPrefix("0:") && b.devno.hasPrefix("0:") && a.fsType == b.fsType
            && a.source.hasPrefix("/dev/") && a.source == b.source
    }

    static func locate(devno: String?, source: String?, in disks: [Disk]) -> Located? {
        if let devno, !devno.hasPrefix("0:") {
            for disk in disks {
                if disk.devno == devno { return Located(disk: disk) }
                if let part = disk.partitions.first(where: { $0.devno == devno }) { return Located(disk: disk, partition: part) }
            }
        }
        // Multi-device filesystems (btrfs) report an anonymous 0:N: go by the mount source.
        guard let source, source.hasPrefix("/dev/") else { return nil }
        let name = String(source.split(separator: "/").last ?? "")
        return locate(name: name, in: disks, mapper: source.hasPrefix("/dev/mapper/"))
    }

    static func locate(name: String, in disks: [Disk], mapper: Bool = false) -> Located? {
        for disk in disks {
            if disk.name == name || (mapper && disk.dmName == name) { return Located(disk: disk) }
            if let part = disk.partitions.first(where: { $0.name == name }) { return Located(disk: disk, partition: part) }
        }
        return nil
    }

    static func bottom(of disk: Disk, in disks: [Disk]) -> [Disk] {
        var seen: Set<String> = []
        var out: [Disk] = []
        func walk(_ d: Disk) {
            guard seen.insert(d.name).inserted else { return }
            let slaves = [.dm, .md].contains(d.transport) ? d.slaves : []
            if slaves.isEmpty {
                out.append(d)
                return
            }
            for slave in slaves {
                if let below = locate(name: slave, in: disks) { walk(below.disk) }
            }
        }
        walk(disk)
        return out
    }
}
