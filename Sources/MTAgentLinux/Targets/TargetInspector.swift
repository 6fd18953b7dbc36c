import Glibc
import Logging
import MTAgentCore

/// Finds what a target identity names on this machine, at the moment of use (DESIGN §3): a WWID
/// is looked up in a fresh inventory; a path names a block device (looked up by its node) or a
/// regular file (labs and tests).
public struct TargetInspector: Sendable {
    let discovery: Discovery

    public init(discovery: Discovery) { self.discovery = discovery }

    public static func forRoot(_ root: String, logger: Logger) -> TargetInspector {
        TargetInspector(discovery: Discovery.forRoot(root, logger: logger))
    }

    /// What a target identity names now.
    public struct Inspection: Sendable {
        public var device: TargetFacts.Device
        /// The resolved path to open and the node it is; nil when nothing (or several disks) match.
        public var admitted: AdmittedTarget?
        public var retentionDisks: Set<String>
        /// The retention directory with every link resolved, for the file-target rule.
        public var retentionPath: String?
        /// A file target on the retention's filesystem (by device number).
        public var fileOnRetentionFilesystem: Bool
    }

    /// The device for `identity`, and the disks under the retention directory. A path identity is
    /// resolved (every symlink) before anything is judged: the rules see the node that will be opened.
    public func inspect(identity: String, retentionPath: String?) throws -> Inspection {
        let disks = try discovery.inventory().disks
        let retention = retentionPath.map { retentionDisks(for: $0, disks: disks) } ?? []
        let resolvedRetention = retentionPath.map { Self.resolve($0) ?? $0 }
        var out = Inspection(device: .missing, admitted: nil, retentionDisks: retention, retentionPath: resolvedRetention,
                             fileOnRetentionFilesystem: false)
        if identity.hasPrefix("/") {
            var st = stat()
            guard let resolved = Self.resolve(identity), lstat(resolved, &st) == 0 else { return out }
            switch st.st_mode & S_IFMT {
            case S_IFREG:
                out.device = .file(path: resolved, size: UInt64(max(0, st.st_size)))
                out.admitted = AdmittedTarget(path: resolved, node: .regularFile(device: UInt64(st.st_dev), inode: UInt64(st.st_ino)))
                var rst = stat()
                if let resolvedRetention, stat(resolvedRetention, &rst) == 0 { out.fileOnRetentionFilesystem = rst.st_dev == st.st_dev }
            case S_IFBLK:
                let rdev = UInt64(st.st_rdev)
                // By device number, not name: the node the rules judge is the node that is opened.
                if let disk = disks.first(where: { AdmittedTarget.Node.deviceNumber($0.devno) == rdev }) {
                    out.device = .disk(disk)
                    out.admitted = AdmittedTarget(path: resolved, node: .blockDevice(rdev: rdev))
                }
            default:
                break
            }
            return out
        }
        let wanted = identity.lowercased()
        let matches = disks.filter { $0.wwid?.lowercased() == wanted }
        switch matches.count {
        case 0: break
        case 1:
            out.device = .disk(matches[0])
            if let rdev = AdmittedTarget.Node.deviceNumber(matches[0].devno) {
                out.admitted = AdmittedTarget(path: Self.resolve(matches[0].devnode) ?? matches[0].devnode, node: .blockDevice(rdev: rdev))
            }
        default: out.device = .ambiguous(matches)
        }
        return out
    }

    /// `path` with every symlink resolved; nil when it does not exist.
    static func resolve(_ path: String) -> String? {
        guard let p = realpath(path, nil) else { return nil }
        defer { free(p) }
        return String(cString: p)
    }

    /// Kernel names of the disk (and partition) the filesystem at `path` lives on.
    func retentionDisks(for path: String, disks: [Disk]) -> Set<String> {
        var st = stat()
        guard stat(path, &st) == 0 else { return [] }
        let devno = "\(major(st.st_dev)):\(minor(st.st_dev))"
        var names: Set<String> = []
        for disk in disks {
            if disk.devno == devno { names.insert(disk.name) }
            for p in disk.partitions where p.devno == devno {
                names.insert(disk.name)
                names.insert(p.name)
            }
        }
        return names
    }
}

private func major(_ dev: dev_t) -> UInt32 { UInt32((dev >> 8) & 0xFFF) | UInt32((dev >> 32) & ~0xFFF) }
private func minor(_ dev: dev_t) -> UInt32 { UInt32(dev & 0xFF) | UInt32((dev >> 12) & ~0xFF) }
