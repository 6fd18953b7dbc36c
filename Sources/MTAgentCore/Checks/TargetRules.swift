/// What is known about a disk (or lab file) someone wants to replicate onto.
public struct TargetFacts: Sendable, Equatable {
    public enum Device: Sendable, Equatable {
        /// A block device from the inventory.
        case disk(Disk)
        /// A regular file (labs and tests), with its size.
        case file(path: String, size: UInt64)
        /// Nothing on this machine carries that identity.
        case missing
        /// Several disks carry that identity (cloned VMs): never guess.
        case ambiguous([Disk])
    }

    /// The identity as assigned: a WWID, or an absolute path to a loop device or file.
    public var identity: String
    public var device: Device
    /// The group the admin assigned the target to; nil when unassigned.
    public var assignedGroup: String?
    /// The group a pair asks for (nil for `check target`).
    public var requestedGroup: String?
    /// Kernel names of the disks under the retention volume (and their partitions).
    public var retentionDisks: Set<String>
    /// The retention directory, for file targets.
    public var retentionPath: String?
    /// The pair already using this target, other than the one asking.
    public var otherPair: String?
    /// The source size the pair asks for (nil for `check target`).
    public var sourceSize: UInt64?
    /// The lab setting `allow_file_targets`: regular files may be targets. Off in production.
    public var allowFileTargets = false
    /// A file target lies on the retention's filesystem (same device number).
    public var fileOnRetentionFilesystem = false

    public init(identity: String, device: Device, assignedGroup: String?, requestedGroup: String? = nil, retentionDisks: Set<String> = [],
                retentionPath: String? = nil, otherPair: String? = nil, sourceSize: UInt64? = nil) {
        self.identity = identity; self.device = device; self.assignedGroup = assignedGroup; self.requestedGroup = requestedGroup
        self.retentionDisks = retentionDisks; self.retentionPath = retentionPath; self.otherPair = otherPair; self.sourceSize = sourceSize
    }
}

/// DESIGN §4: a target disk is written only if the admin assigned it to the pair's group, it is
/// not the system disk, not mounted, has no holders, is not swap, not the retention volume, not
/// another pair's target, and is at least as large as the source. One result per rule; a FAIL
/// names the rule and the fix.
public enum TargetRules {
    public static func evaluate(_ f: TargetFacts) -> [CheckResult] {
        var out = [assigned(f), found(f)]
        switch f.device {
        case .disk(let disk):
            out += diskRules(disk, f)
        case .file(let path, let fileSize):
            out.append(f.allowFileTargets
                ? CheckResult(id: "target.kind", status: .pass, message: "\(path) is a regular file (allow_file_targets is on: a lab)")
                : CheckResult(id: "target.kind", status: .fail, message: "\(path) is a regular file, not a block device",
                              fix: "assign a disk (its WWID from 'mt-agent disks'); only a lab sets allow_file_targets = true in the config"))
            // `path` and `retentionPath` are resolved (no links): a prefix is a real containment.
            if let retention = f.retentionPath, f.fileOnRetentionFilesystem
                || path == retention || path.hasPrefix(retention.hasSuffix("/") ? retention : retention + "/") {
                out.append(CheckResult(id: "target.retention", status: .fail, message: "target file \(path) is on the retention volume \(retention)",
                                       fix: "keep target files off the retention volume"))
            }
            out.append(size(f, have: fileSize, subject: nil))
        case .missing, .ambiguous:
            break
        }
        out.append(otherPair(f))
        return out
    }

    /// The FAIL results only: why a pair may not use this target.
    public static func refusals(_ f: TargetFacts) -> [CheckResult] {
        evaluate(f).filter { $0.status == .fail }
    }

    static func assigned(_ f: TargetFacts) -> CheckResult {
        let id = "target.assigned"
        guard let group = f.assignedGroup else {
            return CheckResult(id: id, status: .fail, message: "target \(f.identity) is not assigned to any consistency group",
                               fix: "mt-agent targets assign \(f.identity) --group GROUP")
        }
        if let requested = f.requestedGroup, requested != group {
            return CheckResult(id: id, status: .fail, message: "target \(f.identity) is assigned to group \(group), not \(requested)",
                               fix: "send this pair in group \(group), or reassign: mt-agent targets assign \(f.identity) --group \(requested)")
        }
        return CheckResult(id: id, status: .pass, message: "target \(f.identity) is assigned to group \(group)")
    }

    static func found(_ f: TargetFacts) -> CheckResult {
        let id = "target.identity"
        switch f.device {
        case .disk(let d):
            return CheckResult(id: id, status: .pass, message: "\(f.identity) is \(d.devnode)", subjects: [.init(d)])
        case .file(let path, _):
            return CheckResult(id: id, status: .pass, message: "\(f.identity) is the regular file \(path)")
        case .missing:
            return CheckResult(id: id, status: .fail, message: "no disk on this machine has the identity \(f.identity)",
                               fix: "attach the disk, rescan (echo '- - -' > /sys/class/scsi_host/hostN/scan), or check the WWID with 'mt-agent disks'")
        case .ambiguous(let disks):
            return CheckResult(id: id, status: .fail, message: "\(disks.count) disks carry the identity \(f.identity): cloned disks are never guessed between",
                               fix: "give each disk its own identity (a new virtual disk, not a copy) and assign that", subjects: disks.map { .init($0) })
        }
    }

    static func diskRules(_ d: Disk, _ f: TargetFacts) -> [CheckResult] {
        let subject = CheckResult.Subject(d)
        var out: [CheckResult] = []
        out.append(d.role == .system
            ? CheckResult(id: "target.system", status: .fail, message: "\(d.devnode) holds the system (/, /boot, swap or their LVM/md)",
                          fix: "assign a disk that the master target does not run from", subjects: [subject])
            : CheckResult(id: "target.system", status: .pass, message: "\(d.devnode) is not a system disk"))
        let mounts = d.mountpoints + d.partitions.flatMap(\.mountpoints)
        out.append(mounts.isEmpty
            ? CheckResult(id: "target.mounted", status: .pass, message: "\(d.devnode) is not mounted")
            : CheckResult(id: "target.mounted", status: .fail, message: "\(d.devnode) is mounted on \(mounts.joined(separator: ", "))",
                          fix: "unmount it (and remove it from /etc/fstab) before replicating onto it", subjects: [subject]))
        let holders = d.holders + d.partitions.flatMap(\.holders)
        out.append(holders.isEmpty
            ? CheckResult(id: "target.holders", status: .pass, message: "\(d.devnode) has no holders")
            : CheckResult(id: "target.holders", status: .fail, message: "\(d.devnode) is held by \(holders.joined(separator: ", ")) (LVM, md or device-mapper)",
                          fix: "deactivate what holds it (vgchange -an VG / mdadm --stop / dmsetup remove); setup's LVM filter keeps it from coming back",
                          subjects: [subject]))
        let swap = d.swap || d.partitions.contains(where: \.swap)
        out.append(swap
            ? CheckResult(id: "target.swap", status: .fail, message: "\(d.devnode) is in use as swap", fix: "swapoff it and remove it from /etc/fstab", subjects: [subject])
            : CheckResult(id: "target.swap", status: .pass, message: "\(d.devnode) is not swap"))
        let retention = f.retentionDisks.contains(d.name) || d.partitions.contains { f.retentionDisks.contains($0.name) }
        out.append(retention
            ? CheckResult(id: "target.retention", status: .fail, message: "\(d.devnode) holds the retention volume",
                          fix: "assign another disk; the journal must never be replicated over", subjects: [subject])
            : CheckResult(id: "target.retention", status: .pass, message: "\(d.devnode) is not the retention volume"))
        out.append(size(f, have: d.sizeBytes, subject: subject))
        return out
    }

    static func size(_ f: TargetFacts, have: UInt64, subject: CheckResult.Subject?) -> CheckResult {
        guard let need = f.sourceSize else {
            return CheckResult(id: "target.size", status: .pass, message: "\(f.identity) is \(have) bytes")
        }
        return have >= need
            ? CheckResult(id: "target.size", status: .pass, message: "\(f.identity) (\(have) bytes) holds the source (\(need) bytes)")
            : CheckResult(id: "target.size", status: .fail, message: "\(f.identity) is \(have) bytes, smaller than the source (\(need) bytes)",
                          fix: "grow the virtual disk to at least \(need) bytes, or assign a larger one", subjects: subject.map { [$0] } ?? [])
    }

    static func otherPair(_ f: TargetFacts) -> CheckResult {
        guard let other = f.otherPair else {
            return CheckResult(id: "target.other-pair", status: .pass, message: "\(f.identity) is no other pair's target")
        }
        return CheckResult(id: "target.other-pair", status: .fail, message: "\(f.identity) is already the target of pair \(other)",
                           fix: "a disk can be the target of one pair only; assign another disk")
    }
}
