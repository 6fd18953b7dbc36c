import MTAgentCore

/// One block device (disk or partition) as an enumerator found it, before its attributes are read.
public struct BlockDeviceEntry: Sendable, Equatable {
    public var name: String
    /// The device's sysfs directory with symlinks resolved, e.g. `/sys/devices/…/block/sda`.
    public var sysPath: String
    public var devnode: String
    public var isPartition: Bool
    /// The whole disk a partition belongs to.
    public var parent: String?
    /// What udevd recorded, when udevd runs and the enumerator is libudev.
    public var udev: UdevProperties?

    public init(
        name: String, sysPath: String, devnode: String, isPartition: Bool, parent: String?,
        udev: UdevProperties? = nil
    ) {
        self.name = name
        self.sysPath = sysPath
        self.devnode = devnode
        self.isPartition = isPartition
        self.parent = parent
        self.udev = udev
    }
}

/// Lists the block devices of a machine.
public protocol BlockDeviceEnumerating: Sendable {
    /// "udev" or "sysfs": reported in the inventory so support knows which path ran.
    var source: String { get }
    func enumerate() throws -> [BlockDeviceEntry]
}

public enum DiscoveryError: Error, CustomStringConvertible, Equatable {
    case notASystemTree(root: String, reason: String)
    case udev(String)

    public var description: String {
        switch self {
        case .notASystemTree(let root, let reason):
            "--root \(root) is not a system tree: \(reason) (capture one with 'mt-agent collect DIR' on the machine)"
        case .udev(let what):
            "libudev: \(what)"
        }
    }
}

/// Enumerates `/sys/class/block` directly: the path for `--root` trees and for `collect`.
public struct SysfsEnumerator: BlockDeviceEnumerating {
    public let files: SystemFiles
    public var source: String { "sysfs" }

    public init(files: SystemFiles) { self.files = files }

    public func enumerate() throws -> [BlockDeviceEntry] {
        guard let names = files.list("/sys/class/block") else {
            throw DiscoveryError.notASystemTree(root: files.root, reason: "\(files.hostPath("/sys/class/block")) is missing")
        }
        return names.compactMap { name in
            // A device removed while we enumerate leaves a dangling link: skip it, never fail.
            guard let sysPath = files.resolve("/sys/class/block/\(name)") else { return nil }
            let isPartition = files.exists("\(sysPath)/partition")
            return BlockDeviceEntry(
                name: name, sysPath: sysPath, devnode: Self.devnode(for: name), isPartition: isPartition,
                parent: isPartition ? Paths.basename(Paths.dirname(sysPath)) : nil)
        }
    }

    /// Kernel names use `!` where the device node has `/` (e.g. `cciss!c0d0`).
    static func devnode(for name: String) -> String {
        "/dev/" + name.replacingOccurrences(of: "!", with: "/")
    }
}

extension String {
    fileprivate func replacingOccurrences(of a: Character, with b: Character) -> String {
        String(map { $0 == a ? b : $0 })
    }
}
