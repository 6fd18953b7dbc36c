import CMTShim
import Glibc

/// Size and sector sizes of an open block device, straight from the kernel's ioctls: the
/// authoritative numbers a writer must respect, whatever sysfs says.
public struct BlockDeviceGeometry: Sendable, Equatable {
    public var sizeBytes: UInt64
    public var logicalBlockSize: Int
    public var physicalBlockSize: Int
    public var readOnly: Bool

    public enum Error: Swift.Error, Equatable, CustomStringConvertible {
        case open(String, errno: Int32)
        case notABlockDevice(String)
        case ioctl(String, request: String, errno: Int32)

        public var description: String {
            switch self {
            case .open(let p, let e): "cannot open \(p): \(String(cString: strerror(e)))"
            case .notABlockDevice(let p): "\(p) is not a block device"
            case .ioctl(let p, let r, let e): "\(r) on \(p) failed: \(String(cString: strerror(e)))"
            }
        }
    }

    /// Opens `path` read-only (it never writes) and asks the kernel.
    public static func read(path: String) throws -> BlockDeviceGeometry {
        let fd = open(path, O_RDONLY | O_CLOEXEC)
        guard fd >= 0 else { throw Error.open(path, errno: errno) }
        defer { close(fd) }
        var st = stat()
        guard fstat(fd, &st) == 0, (st.st_mode & S_IFMT) == S_IFBLK else { throw Error.notABlockDevice(path) }

        var size: UInt64 = 0
        var logical: Int32 = 0
        var physical: UInt32 = 0
        var ro: Int32 = 0
        guard mt_blk_getsize64(fd, &size) == 0 else { throw Error.ioctl(path, request: "BLKGETSIZE64", errno: errno) }
        guard mt_blk_sszget(fd, &logical) == 0 else { throw Error.ioctl(path, request: "BLKSSZGET", errno: errno) }
        guard mt_blk_pbszget(fd, &physical) == 0 else { throw Error.ioctl(path, request: "BLKPBSZGET", errno: errno) }
        guard mt_blk_roget(fd, &ro) == 0 else { throw Error.ioctl(path, request: "BLKROGET", errno: errno) }
        return BlockDeviceGeometry(
            sizeBytes: size, logicalBlockSize: Int(logical), physicalBlockSize: Int(physical), readOnly: ro != 0)
    }
}
