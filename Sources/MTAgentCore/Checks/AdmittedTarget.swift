/// A target as the target rules judged it: the resolved path to open, and the node it was then, so
/// that whoever opens it for writing can check on the open descriptor that it is still the same
/// device (a symlink swapped, a device node replaced, a disk renamed between the check and the open).
public struct AdmittedTarget: Sendable, Equatable {
    public enum Node: Sendable, Equatable, CustomStringConvertible {
        /// A block device, by its device number (`st_rdev`).
        case blockDevice(rdev: UInt64)
        /// A regular file (labs, with allow_file_targets), by filesystem and inode.
        case regularFile(device: UInt64, inode: UInt64)

        public var description: String {
            switch self {
            case .blockDevice(let rdev): "block device \(Self.majorMinor(rdev))"
            case .regularFile(let device, let inode): "regular file (device \(Self.majorMinor(device)), inode \(inode))"
            }
        }

        /// `major:minor` of a Linux dev_t (glibc's encoding).
        public static func majorMinor(_ dev: UInt64) -> String {
            let major = ((dev >> 8) & 0xFFF) | ((dev >> 32) & ~UInt64(0xFFF))
            let minor = (dev & 0xFF) | ((dev >> 12) & ~UInt64(0xFF))
            return "\(major):\(minor & 0xFFFF_FFFF)"
        }

        /// The dev_t for a sysfs `major:minor` string; nil when it does not parse.
        public static func deviceNumber(_ majorMinor: String) -> UInt64? {
            let parts = majorMinor.split(separator: ":")
            guard parts.count == 2, let major = UInt64(parts[0]), let minor = UInt64(parts[1]),
                  major <= 0xFFFF_FFFF, minor <= 0xFFFF_FFFF else { return nil }
            return ((major & 0xFFFF_F000) << 32) | ((major & 0xFFF) << 8) | ((minor & 0xFFFF_FF00) << 12) | (minor & 0xFF)
        }
    }

    public var path: String
    public var node: Node

    public init(path: String, node: Node) { self.path = path; self.node = node }
}
