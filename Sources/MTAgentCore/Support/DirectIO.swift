/// What O_DIRECT (page cache bypassed) needs: buffer, file offset and length aligned to the
/// device's logical block size. 4096 covers every block size in use. Replication reads and writes
/// whole devices: through the page cache the kernel's copy costs more CPU than SHA-256 of the same
/// bytes, and for a full resync it is most of the master target's CPU.
public enum DirectIO {
    public static let alignment = 4096

    /// Linux's O_DIRECT, which Glibc's Swift overlay does not import (it needs _GNU_SOURCE).
    #if arch(arm64) || arch(arm)
    public static let openFlag: Int32 = 0o200000
    #else
    public static let openFlag: Int32 = 0o40000
    #endif

    public static func isAligned(_ value: UInt64) -> Bool { value % UInt64(alignment) == 0 }
    public static func isAligned(_ value: Int) -> Bool { value % alignment == 0 }

    /// `count` rounded up to the alignment.
    public static func roundUp(_ count: Int) -> Int { (count + alignment - 1) / alignment * alignment }
}

/// Memory aligned for O_DIRECT, freed with its owner. Not synchronised: one user at a time.
public final class AlignedBuffer: @unchecked Sendable {
    public let bytes: UnsafeMutableRawBufferPointer

    /// `capacity` is rounded up to the alignment.
    public init(capacity: Int) {
        bytes = .allocate(byteCount: DirectIO.roundUp(max(1, capacity)), alignment: DirectIO.alignment)
    }

    deinit { bytes.deallocate() }

    public var count: Int { bytes.count }
}
