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

    /// The device for `identity`, and the disks under the retention directory.
    public func inspect(identity: String, retentionPath: String?) throws -> (device: TargetFacts.Device, devicePath: String?, retentionDisks: Set<String>) {
        let disks = try discovery.inventory().disks
        let retention = retentionPath.map { retentionDisks(for: $0, disks: disks) } ?? []
        if identity.hasPrefix("/") {
            var st = stat()
            guard stat(identity, &st) == 0 else { return (.missing, nil, retention) }
            if (st.st_mode & S_IFMT) == S_IFREG {
                return (.file(path: identity, size: UInt64(st.st_size)), identity, retention)
            }
            let resolved = realpath(identity, nil).map { p in defer { free(p) }; return String(cString: p) } ?? identity
            if let disk = disks.first(where: { $0.devnode == resolved || $0.devnode == identity }) {
                return (.disk(disk), disk.devnode, retention)
            }
            return (.missing, nil, retention)
        }
        let wanted = identity.lowercased()
        let matches = disks.filter { $0.wwid?.lowercased() == wanted }
        switch matches.count {
        case 0: return (.missing, nil, retention)
        case 1: return (.disk(matches[0]), matches[0].devnode, retention)
        default: return (.ambiguous(matches), nil, retention)
        }
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
