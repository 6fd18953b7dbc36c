import CBlkid
import Glibc
import MTAgentCore

/// Reads what is on a block device (filesystem, partition table, partition entry).
public protocol FilesystemProbing: Sendable {
    func probe(path: String) -> Result<ProbeResult, ProbeError>
}

public enum ProbeError: Error, Equatable, CustomStringConvertible {
    /// Opening the device needs privileges we do not have.
    case permissionDenied(String)
    case cannotOpen(String, errno: Int32)
    case ambivalent(String)
    case failed(String)

    public var description: String {
        switch self {
        case .permissionDenied(let p):
            geteuid() == 0
                ? "cannot open \(p): permission denied even for root (a device policy blocks it)"
                : "cannot open \(p): permission denied (filesystem details need root)"
        case .cannotOpen(let p, let e): "cannot open \(p): \(String(cString: strerror(e)))"
        case .ambivalent(let p): "\(p) carries signatures of more than one filesystem or table; blkid will not guess"
        case .failed(let p): "probing \(p) failed"
        }
    }
}

/// libblkid's low-level probe: the same answers `blkid -p` gives, without the blkid cache.
public struct BlkidProber: FilesystemProbing {
    public init() {}

    public func probe(path: String) -> Result<ProbeResult, ProbeError> {
        errno = 0
        guard let probe = blkid_new_probe_from_filename(path) else {
            let e = errno
            return .failure(e == EACCES || e == EPERM ? .permissionDenied(path) : .cannotOpen(path, errno: e))
        }
        defer { blkid_free_probe(probe) }
        blkid_probe_enable_superblocks(probe, 1)
        blkid_probe_set_superblocks_flags(
            probe, BLKID_SUBLKS_LABEL | BLKID_SUBLKS_UUID | BLKID_SUBLKS_TYPE | BLKID_SUBLKS_USAGE)
        blkid_probe_enable_partitions(probe, 1)
        blkid_probe_set_partitions_flags(probe, BLKID_PARTS_ENTRY_DETAILS)

        switch blkid_do_safeprobe(probe) {
        case 0: break
        case 1: return .success(ProbeResult())  // nothing recognised: an empty device
        case -2: return .failure(.ambivalent(path))
        default: return .failure(.failed(path))
        }

        func value(_ key: String) -> String? {
            var data: UnsafePointer<CChar>?
            var length = 0
            guard blkid_probe_lookup_value(probe, key, &data, &length) == 0, let data else { return nil }
            let s = String(cString: data)
            return s.isEmpty ? nil : s
        }
        let table = value("PTTYPE").map { PartitionTable(type: $0, uuid: value("PTUUID")) }
        return .success(
            ProbeResult(
                fsType: value("TYPE"), uuid: value("UUID"), label: value("LABEL"), usage: value("USAGE"),
                partUUID: value("PART_ENTRY_UUID"), partLabel: value("PART_ENTRY_NAME"), partitionTable: table))
    }
}

/// Used where probing must not happen (e.g. `collect`, which captures sysfs only).
public struct NoProbing: FilesystemProbing {
    public init() {}
    public func probe(path: String) -> Result<ProbeResult, ProbeError> { .success(ProbeResult()) }
}
