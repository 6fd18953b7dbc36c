import Glibc
import Logging
import MTAgentCore
import MTAgentLinux

/// The retention volume (DESIGN §4): without `--retention-device`, the volume already mounted at
/// the retention path is validated with the retention rules; with one, setup prepares that device:
/// formats it when allowed (`--format ext4|xfs`; a device that holds anything is formatted only
/// when `--force-format` names it), mounts it at the retention path and adds it to /etc/fstab by
/// `UUID=` with `nofail`, then validates it the same way.
///
/// Never formats or wipes anything on revert: `--revert` unmounts the volume if setup mounted it
/// and the engine restores /etc/fstab. On a `--root` tree nothing is formatted or mounted on this
/// host; the step says what to run on the machine.
///
/// A filesystem labelled `mt-retention` of the requested type is one setup made: it is used as it
/// is, not formatted again, so a run killed after `mkfs` resumes without `--force-format`.
public struct RetentionVolumeStep: SetupStep {
    public let id = "retention"
    public let title = "Prepare the retention volume: validate it; format, mount and list in /etc/fstab a given device"

    public static let label = "mt-retention"
    public static let defaultFstab = "/etc/fstab"
    /// Written (through the backed-up file writer) just before setup mounts the volume, so that
    /// `--revert` unmounts only a mount setup made; the engine removes it after the revert.
    public static let defaultMarker = "/var/lib/mt-agent/retention-mount"
    static let usableTypes: Set<String> = ["ext4", "xfs"]
    static let fatTypes: Set<String> = ["vfat", "msdos", "fat", "exfat"]

    /// The fstab to read and append to, as a path on the machine.
    let fstabPath: String
    /// Where to mount the volume; nil: `options.retentionPath`.
    let mountPointOverride: String?
    let markerPath: String
    /// Formats and mounts on this host; nil: only when the root is `/`.
    let live: Bool?
    let prober: FilesystemProbing

    /// `fstabPath`, `mountPoint` and `markerPath` default to the machine's; tests point them into
    /// a temp directory so that real devices are mounted without touching the host's /etc/fstab.
    public init(
        fstabPath: String = RetentionVolumeStep.defaultFstab, mountPoint: String? = nil,
        markerPath: String = RetentionVolumeStep.defaultMarker, live: Bool? = nil
    ) {
        self.fstabPath = fstabPath
        self.mountPointOverride = mountPoint
        self.markerPath = markerPath
        self.live = live
        self.prober = BlkidProber()
    }

    func mountPoint(_ context: SetupContext) -> String {
        Paths.normalize(mountPointOverride ?? context.options.retentionPath)
    }

    func isLive(_ context: SetupContext) -> Bool { live ?? (context.root == "/") }

    // MARK: - Check

    public func check(_ context: SetupContext) throws -> StepState {
        switch try analyze(context) {
        case .state(let state): return state
        case .plan(let plan): return .needed(plan.description)
        }
    }

    // MARK: - Apply

    public func apply(_ context: SetupContext) throws -> StepOutcome {
        let plan: Plan
        switch try analyze(context) {
        case .plan(let p): plan = p
        case .state(.done): return StepOutcome(summary: "the retention volume is ready at \(mountPoint(context))")
        case .state(.blocked(let why)), .state(.notApplicable(let why)), .state(.needed(let why)): throw RetentionStepError(why)
        }
        var done: [String] = []
        var fsType = plan.fsType
        var uuid = plan.uuid
        if plan.wipe {
            try run(["wipefs", "-a", plan.device], context)
            done.append("wiped \(plan.device) (destroyed \(plan.destroys ?? "its signatures"))")
        }
        if let format = plan.format {
            let mkfs = format == "xfs"
                ? ["mkfs.xfs", "-f", "-L", Self.label, plan.device]
                : ["mkfs.ext4", "-F", "-L", Self.label, plan.device]
            try run(mkfs, context)
            // The new filesystem's identity from libblkid, never from mkfs's output.
            guard case .success(let probe) = prober.probe(path: plan.device), let made = probe.uuid, probe.fsType == format else {
                throw RetentionStepError("\(mkfs.joined(separator: " ")) ran, but libblkid finds no \(format) filesystem with a UUID on \(plan.device)")
            }
            fsType = format
            uuid = made
            done.append("formatted \(plan.device) as \(format) (UUID \(made))")
        }
        guard let uuid else { throw RetentionStepError("\(plan.device) has no filesystem UUID to list in \(fstabPath)") }

        if plan.mount && !HostFile.exists(plan.mountPoint) {
            try HostFile.makeDirectories(plan.mountPoint, mode: 0o755)
            context.logger.info("created mount point", metadata: ["file": "\(plan.mountPoint)"])
        }
        if plan.mount {
            let marker = "# mt-agent setup mounted the retention volume; setup --revert unmounts it\n"
                + "device=\(plan.device)\nuuid=\(uuid)\nmount_point=\(plan.mountPoint)\n"
            try context.files.write(markerPath, Array(marker.utf8), mode: 0o644)
        }
        if plan.addFstab {
            let existing = context.files.read(fstabPath) ?? []
            let text = String(decoding: existing, as: UTF8.self)
            if !Fstab.entries(text).contains(where: { $0.uuid == uuid.lowercased() && $0.mountPoint == plan.mountPoint }) {
                var bytes = existing
                if let last = bytes.last, last != UInt8(ascii: "\n") { bytes.append(UInt8(ascii: "\n")) }
                bytes += Array(Fstab.line(uuid: uuid, mountPoint: plan.mountPoint, fsType: fsType).utf8)
                try context.files.write(fstabPath, bytes, mode: context.files.mode(of: fstabPath) ?? 0o644)
                done.append("added UUID=\(uuid) to \(fstabPath)")
            }
            reloadSystemd(context)
        }
        if plan.mount {
            try run(mountCommand(plan.mountPoint), context)
            done.append("mounted it at \(plan.mountPoint)")
        }

        let failed = try inspect(plan.mountPoint, context).filter { $0.status == .fail }
        if !failed.isEmpty {
            throw RetentionStepError(
                "\(plan.mountPoint) does not pass the retention check after \(done.joined(separator: ", ")): "
                    + failed.map(Self.reason).joined(separator: "; "))
        }
        return StepOutcome(summary: done.isEmpty ? "\(plan.device) is ready at \(plan.mountPoint)" : done.joined(separator: ", "))
    }

    // MARK: - Revert

    /// Unmounts the volume when setup mounted it (the marker says so). The engine then restores
    /// /etc/fstab and removes the marker. Never formats or wipes.
    public func revert(_ context: SetupContext) throws {
        guard isLive(context), let bytes = context.files.read(markerPath) else { return }
        let fields = String(decoding: bytes, as: UTF8.self).split(separator: "\n").filter { !$0.hasPrefix("#") }
        guard let point = fields.first(where: { $0.hasPrefix("mount_point=") }).map({ String($0.dropFirst("mount_point=".count)) }),
            !point.isEmpty
        else { return }
        let mounts = MountInfo.parse(context.system.text("/proc/self/mountinfo") ?? "")
        guard mounts.contains(where: { $0.mountPoint == point }) else { return }
        try run(["umount", point], context)
    }

    public func afterRevert(_ context: SetupContext) throws {
        guard isLive(context) else { return }
        reloadSystemd(context)
    }

    // MARK: - Analysis

    enum Analysis {
        case state(StepState)
        case plan(Plan)
    }

    /// What apply will do, all decided before anything is changed.
    struct Plan {
        var device: String
        var mountPoint: String
        var fstabPath: String
        /// The filesystem to make; nil: the device is used as it is.
        var format: String?
        /// `wipefs -a` first: the device holds something (`destroys` says what) and the admin forced it.
        var wipe: Bool
        var destroys: String?
        /// The filesystem the volume will have, and its UUID when it already exists.
        var fsType: String
        var uuid: String?
        var addFstab: Bool
        var mount: Bool

        var description: String {
            let fstabPart = "add it to \(fstabPath) by UUID"
            if let format {
                let formatting = destroys.map { "wipe \(device) with wipefs -a, destroying \($0), and format it as \(format)" }
                    ?? "format \(device) as \(format)"
                return "\(formatting), mount it at \(mountPoint), \(fstabPart)"
            }
            let volume = "\(device) (\(fsType)\(uuid.map { ", UUID \($0)" } ?? ""))"
            if !mount { return "add \(volume), mounted at \(mountPoint), to \(fstabPath) by UUID" }
            if !addFstab { return "mount \(volume) at \(mountPoint) by its \(fstabPath) line" }
            return "mount \(volume) at \(mountPoint) as it is (not formatted), \(fstabPart)"
        }
    }

    func analyze(_ context: SetupContext) throws -> Analysis {
        let point = mountPoint(context)
        guard let device = context.options.retentionDevice else {
            // A machine image or fixture tree has no volumes to mount or statvfs here: the
            // retention volume is checked on the machine itself.
            guard isLive(context) else {
                return .state(.notApplicable("the retention volume is checked on the machine itself: mt-agent check retention \(point)"))
            }
            return .state(try validateExisting(point, context))
        }
        let format = context.options.format
        if let format, !Self.usableTypes.contains(format) {
            return .state(.blocked("--format must be ext4 or xfs, not '\(format)'"))
        }
        guard isLive(context) else {
            return .state(.notApplicable(notLive(device, point, format: format, context)))
        }

        // The device, as the kernel sees it now.
        let devno: String
        switch LiveVolumes().kind(of: device) {
        case .blockDevice(let d): devno = d
        case .missing: return .state(.blocked("--retention-device \(device) does not exist"))
        case .inaccessible(let why): return .state(.blocked("cannot look at \(device): \(why)"))
        case .directory, .other: return .state(.blocked("--retention-device \(device) is not a block device"))
        }
        let facts = deviceFacts(devno, context)
        if let disk = context.inventory.disks.first(where: { $0.devno == devno }), disk.role == .system {
            return .state(.blocked("\(device) is the system disk \(disk.name) (it holds /, /boot or swap): choose a disk of its own for retention"))
        }
        if !facts.holders.isEmpty {
            return .state(.blocked(
                "\(device) is held by \(facts.holders.joined(separator: ", ")) (device-mapper or md use it): "
                    + "release it (multipath -f, mdadm --stop, dmsetup remove) or choose another device"))
        }
        if facts.swap {
            return .state(.blocked("\(device) is in use as swap: swapoff it and remove it from /etc/fstab, or choose another device"))
        }
        let mounts = MountInfo.parse(context.system.text("/proc/self/mountinfo") ?? "")
        let ownMounts = mounts.filter { facts.devnos.contains($0.devno) }
        let mountedHere = ownMounts.contains { $0.devno == devno && $0.mountPoint == point }
        if !mountedHere, let elsewhere = ownMounts.first {
            let what = elsewhere.devno == devno ? device : "\(device) (its partition \(elsewhere.source))"
            return .state(.blocked(
                "\(what) is mounted at \(elsewhere.mountPoint) (\(elsewhere.fsType)); setup mounts the "
                    + "retention volume only at \(point): unmount it (umount \(elsewhere.mountPoint)) and remove its /etc/fstab line, "
                    + "or choose another device"))
        }
        if !mountedHere {
            if let other = mounts.last(where: { $0.mountPoint == point }) {
                return .state(.blocked(
                    "\(point) is already the mount point of \(other.source) (\(other.fsType)), not \(device): unmount it and remove "
                        + "its /etc/fstab line, or run setup without --retention-device to use the volume mounted there"))
            }
            switch LiveVolumes().kind(of: point) {
            case .missing, .directory: break
            default: return .state(.blocked("\(point) exists and is not a directory: it cannot be the mount point"))
            }
            if let entries = context.system.list(point), !entries.isEmpty {
                return .state(.blocked(
                    "\(point) is a directory with \(entries.count) entr\(entries.count == 1 ? "y" : "ies") in it: mounting \(device) "
                        + "there would hide them; move them away, then run setup again"))
            }
        }

        // What the device holds.
        let probe: ProbeResult?
        switch prober.probe(path: device) {
        case .success(let p): probe = p
        case .failure(.ambivalent): probe = nil
        case .failure(let error): return .state(.blocked("cannot read what \(device) holds: \(error)"))
        }
        let content = Self.content(probe, partitions: facts.partitionNames)
        let uuid = probe?.uuid
        let fsType = probe?.fsType
        let fstabText = context.files.read(fstabPath).map { String(decoding: $0, as: UTF8.self) } ?? ""
        let fstab = Fstab.entries(fstabText)
        let fstabByUUID = uuid.map { u in fstab.contains { $0.uuid == u.lowercased() && $0.mountPoint == point } } ?? false

        if mountedHere {
            guard let fsType, let uuid else {
                return .state(.blocked("\(device) is mounted at \(point) but libblkid finds no filesystem UUID on it"))
            }
            if Self.fatTypes.contains(fsType) {
                return .state(.blocked(
                    "\(device) is \(fsType), mounted at \(point); FAT cannot hold the journal: unmount it, then run setup with "
                        + "--format ext4 --force-format \(device) to destroy it"))
            }
            if let conflict = Self.fstabConflict(fstab, uuid: uuid, point: point, device: device, fstabPath: fstabPath) {
                return .state(.blocked(conflict))
            }
            if fstabByUUID {
                let failed = try inspect(point, context).filter { $0.status == .fail }
                if failed.isEmpty { return .state(.done) }
                return .state(.blocked(
                    "\(device) is mounted at \(point) and in \(fstabPath), but fails the retention check:\n"
                        + failed.map(Self.reason).joined(separator: "\n")))
            }
            return .plan(Plan(
                device: device, mountPoint: point, fstabPath: fstabPath, format: nil, wipe: false, destroys: nil,
                fsType: fsType, uuid: uuid, addFstab: true, mount: false))
        }

        let forced = context.options.forceFormatDevice.map { sameDevice($0, device, devno: devno) } ?? false
        let forceHint = forced || context.options.forceFormatDevice == nil
            ? "" : " (--force-format names \(context.options.forceFormatDevice!), not \(device))"
        var plan = Plan(
            device: device, mountPoint: point, fstabPath: fstabPath, format: nil, wipe: false, destroys: nil,
            fsType: fsType ?? "", uuid: uuid, addFstab: !fstabByUUID, mount: true)

        if content == nil {
            guard let format else {
                return .state(.blocked("\(device) holds no filesystem: pass --format ext4 (or --format xfs) to format it"))
            }
            plan.format = format
            plan.fsType = format
            plan.uuid = nil
        } else if let fsType, Self.usableTypes.contains(fsType),
            format == nil || (format == fsType && probe?.label == Self.label)
        {
            // Used as it is: an ext4/xfs the admin names without --format, or one setup made.
        } else {
            let what = content!
            guard let format else {
                if let fsType, Self.fatTypes.contains(fsType) {
                    return .state(.blocked(
                        "\(device) holds \(what), which cannot hold the journal: it must be reformatted — pass --format ext4 "
                            + "--force-format \(device) to destroy it"))
                }
                return .state(.blocked(
                    "\(device) holds \(what), not ext4 or xfs: pass --format ext4 --force-format \(device) to destroy it and use "
                        + "the device for retention, or choose another device"))
            }
            guard forced else {
                return .state(.blocked("\(device) holds \(what); refusing to format it — pass --force-format \(device) to destroy it\(forceHint)"))
            }
            plan.format = format
            plan.fsType = format
            plan.uuid = nil
            plan.wipe = true
            plan.destroys = what
        }

        // An fstab line for this mount point or this filesystem that is not the one setup adds.
        if let conflict = Self.fstabConflict(fstab, uuid: plan.uuid, point: point, device: device, fstabPath: fstabPath) {
            return .state(.blocked(conflict))
        }
        if plan.uuid == nil { plan.addFstab = true }
        return .plan(plan)
    }

    /// Without a device: the volume at the retention path must pass the retention rules.
    func validateExisting(_ point: String, _ context: SetupContext) throws -> StepState {
        let hint = "or pass --retention-device DEV --format ext4 to have setup format a dedicated disk and mount it at \(point)"
        let results: [CheckResult]
        do {
            results = try inspect(point, context)
        } catch let error as RetentionError {
            return .blocked("\(error)\n\(hint)")
        }
        let failed = results.filter { $0.status == .fail }
        if failed.isEmpty { return .done }
        return .blocked(
            "the retention volume at \(point) fails the retention check:\n" + failed.map(Self.reason).joined(separator: "\n")
                + "\nfix that, \(hint)")
    }

    func inspect(_ point: String, _ context: SetupContext) throws -> [CheckResult] {
        try RetentionInspector.forRoot(context.root, logger: context.logger).check(path: point)
    }

    static func reason(_ result: CheckResult) -> String {
        result.message + (result.fix.map { " — \($0)" } ?? "")
    }

    /// Under `--root`: the commands to run on that machine instead.
    func notLive(_ device: String, _ point: String, format: String?, _ context: SetupContext) -> String {
        var commands: [String] = []
        if let format {
            if context.options.forceFormatDevice != nil { commands.append("wipefs -a \(device)") }
            commands.append(format == "xfs" ? "mkfs.xfs -f -L \(Self.label) \(device)" : "mkfs.ext4 -F -L \(Self.label) \(device)")
        }
        let fs = format ?? "$(blkid -s TYPE -o value \(device))"
        commands.append("mkdir -p \(point)")
        commands.append("echo \"UUID=$(blkid -s UUID -o value \(device)) \(Fstab.escape(point)) \(fs) defaults,nofail 0 2\" >> \(fstabPath)")
        commands.append("mount \(point)")
        return "not formatting or mounting anything on this host for --root \(context.root); on that machine run: "
            + commands.joined(separator: " && ") + " (or run setup there with --retention-device)"
    }

    // MARK: - Device facts

    struct DeviceFacts {
        /// The device's and its partitions' `major:minor`.
        var devnos: Set<String>
        var partitionNames: [String]
        /// "dm-0", or "sdc1: dm-0" for a partition's holder.
        var holders: [String]
        var swap: Bool
    }

    func deviceFacts(_ devno: String, _ context: SetupContext) -> DeviceFacts {
        let sys = context.system
        let dir = "/sys/dev/block/\(devno)"
        var facts = DeviceFacts(devnos: [devno], partitionNames: [], holders: sys.list(dir + "/holders") ?? [], swap: false)
        for name in sys.list(dir) ?? [] where sys.exists("\(dir)/\(name)/partition") {
            facts.partitionNames.append(name)
            if let d = sys.text("\(dir)/\(name)/dev") { facts.devnos.insert(d) }
            facts.holders += (sys.list("\(dir)/\(name)/holders") ?? []).map { "\(name): \($0)" }
        }
        for swap in Swaps.parse(sys.text("/proc/swaps") ?? "") {
            if case .blockDevice(let d) = LiveVolumes().kind(of: swap.filename), facts.devnos.contains(d) { facts.swap = true }
        }
        return facts
    }

    func sameDevice(_ named: String, _ device: String, devno: String) -> Bool {
        if named == device { return true }
        if case .blockDevice(let d) = LiveVolumes().kind(of: named) { return d == devno }
        return false
    }

    /// What a device holds, for messages ("ext4 (UUID …)", "a gpt partition table"); nil: nothing.
    /// A nil probe is libblkid refusing to choose between several signatures.
    static func content(_ probe: ProbeResult?, partitions: [String]) -> String? {
        guard let probe else { return "signatures of more than one filesystem or partition table" }
        if let fs = probe.fsType {
            var details: [String] = []
            if let uuid = probe.uuid { details.append("UUID \(uuid)") }
            if let label = probe.label { details.append("label \(label)") }
            return fs + (details.isEmpty ? "" : " (\(details.joined(separator: ", ")))")
        }
        if let table = probe.partitionTable { return "a \(table.type) partition table" }
        if let usage = probe.usage { return "a \(usage) signature" }
        if !partitions.isEmpty { return "partitions \(partitions.joined(separator: ", "))" }
        return nil
    }

    static func fstabConflict(_ entries: [Fstab.Entry], uuid: String?, point: String, device: String, fstabPath: String) -> String? {
        let uuid = uuid?.lowercased()
        if let other = entries.first(where: { $0.mountPoint == point && ($0.uuid == nil || $0.uuid != uuid) }) {
            return "\(fstabPath) line \(other.line) already mounts \(other.spec) at \(point): remove or comment out that line, "
                + "then run setup again (it adds a UUID= line for \(device))"
        }
        if let uuid, let other = entries.first(where: { $0.uuid == uuid && $0.mountPoint != point }) {
            return "\(fstabPath) line \(other.line) mounts \(device) (UUID=\(uuid)) at \(other.mountPoint), not at \(point): "
                + "remove that line, then run setup again"
        }
        return nil
    }

    // MARK: - Commands

    /// `mount POINT`, so that the fstab line is what mounts it (and is known to work at boot).
    func mountCommand(_ point: String) -> [String] {
        fstabPath == Self.defaultFstab ? ["mount", point] : ["mount", "--fstab", fstabPath, point]
    }

    /// systemd generates mount units from /etc/fstab; it reads a changed file only when reloaded.
    func reloadSystemd(_ context: SetupContext) {
        guard context.systemdRunning, fstabPath == Self.defaultFstab else { return }
        do {
            try run(["systemctl", "daemon-reload"], context)
        } catch {
            context.logger.warning("systemctl daemon-reload failed", metadata: ["error": "\(error)"])
        }
    }

    private func run(_ command: [String], _ context: SetupContext) throws {
        context.logger.info("running", metadata: ["command": "\(command.joined(separator: " "))"])
        let result = try context.runner.run(command)
        guard result.status == 0 else {
            throw CommandError.failed(command.joined(separator: " "), status: result.status, stderr: result.stderr)
        }
    }
}

struct RetentionStepError: Error, CustomStringConvertible {
    var description: String
    init(_ description: String) { self.description = description }
}

/// The lines of /etc/fstab setup looks at (fstab(5)): spec, mount point, type; comments skipped.
enum Fstab {
    struct Entry: Equatable {
        /// 1-based line number.
        var line: Int
        var spec: String
        var mountPoint: String
        var fsType: String
        /// The UUID of a `UUID=` spec, lowercased.
        var uuid: String? {
            guard spec.uppercased().hasPrefix("UUID=") else { return nil }
            var value = Substring(spec.dropFirst(5))
            if value.count >= 2, let f = value.first, f == value.last, f == "\"" || f == "'" {
                value = value.dropFirst().dropLast()
            }
            return value.lowercased()
        }
    }

    static func entries(_ text: String) -> [Entry] {
        text.split(separator: "\n", omittingEmptySubsequences: false).enumerated().compactMap { index, line in
            let fields = line.split(whereSeparator: { $0 == " " || $0 == "\t" })
            guard fields.count >= 2, !fields[0].hasPrefix("#") else { return nil }
            return Entry(
                line: index + 1, spec: MountInfo.unescape(String(fields[0])),
                mountPoint: Paths.normalize(MountInfo.unescape(String(fields[1]))),
                fsType: fields.count > 2 ? String(fields[2]) : "")
        }
    }

    static func line(uuid: String, mountPoint: String, fsType: String) -> String {
        "UUID=\(uuid) \(escape(mountPoint)) \(fsType) defaults,nofail 0 2\n"
    }

    /// fstab writes space, tab, newline and backslash as `\NNN` octal.
    static func escape(_ path: String) -> String {
        var out = ""
        for c in path.unicodeScalars {
            switch c {
            case " ": out += "\\040"
            case "\t": out += "\\011"
            case "\n": out += "\\012"
            case "\\": out += "\\134"
            default: out.unicodeScalars.append(c)
            }
        }
        return out
    }
}
