/// A whole block device as mt-agent sees it: where it is attached, what it is, how it is
/// identified, and what is on it. Built by MTAgentLinux's discovery, rendered by the CLI.
public struct Disk: Codable, Sendable, Equatable {
    /// How the kernel reaches the disk; decides which identity rules apply.
    public enum Transport: String, Codable, Sendable {
        case scsi, virtio, nvme, loop, zram, dm, md, ram, other
    }

    public enum Role: String, Codable, Sendable {
        /// Holds /, /boot or swap (directly, through a partition or through a holder): never a target.
        case system
        case free
    }

    public var name: String
    public var devnode: String
    /// "major:minor", the key that ties mounts, swaps and holders to the disk.
    public var devno: String
    public var transport: Transport
    @Nullable public var hctl: String? = nil
    /// SCSI peripheral device type (0 disk, 5 CD/DVD, 0xE RBC); nil for non-SCSI devices.
    @Nullable public var scsiDeviceType: Int? = nil
    @Nullable public var driver: String? = nil
    @Nullable public var vendor: String? = nil
    @Nullable public var model: String? = nil
    @Nullable public var revision: String? = nil
    public var sizeBytes: UInt64
    public var logicalBlockSize: Int
    public var physicalBlockSize: Int
    @Nullable public var rotational: Bool? = nil
    public var removable: Bool
    public var readOnly: Bool
    @Nullable public var wwid: String? = nil
    @Nullable public var serial: String? = nil
    public var designators: [Designator]
    /// The kernel's own `wwid` attribute, verbatim (evidence next to VPD 0x83).
    @Nullable public var kernelWWID: String? = nil
    @Nullable public var udev: UdevProperties? = nil
    @Nullable public var partitionTable: PartitionTable? = nil
    @Nullable public var fsType: String? = nil
    @Nullable public var uuid: String? = nil
    @Nullable public var label: String? = nil
    @Nullable public var usage: String? = nil
    public var mountpoints: [String]
    public var swap: Bool
    public var partitions: [Partition]
    public var holders: [String]
    public var slaves: [String]
    /// For device-mapper devices: `dm/name` and `dm/uuid` (multipath maps use `mpath-<wwid>`).
    @Nullable public var dmName: String? = nil
    @Nullable public var dmUUID: String? = nil
    public var role: Role
    public var warnings: [String]

    public init(name: String, devnode: String, devno: String, transport: Transport) {
        self.name = name
        self.devnode = devnode
        self.devno = devno
        self.transport = transport
        self.sizeBytes = 0
        self.logicalBlockSize = 512
        self.physicalBlockSize = 512
        self.removable = false
        self.readOnly = false
        self.designators = []
        self.mountpoints = []
        self.swap = false
        self.partitions = []
        self.holders = []
        self.slaves = []
        self.role = .free
        self.warnings = []
    }

    /// An NAA or EUI-64 designator of the logical unit: an identity that survives reboots,
    /// rescans and moves between controllers.
    public var hasStrongIdentity: Bool {
        designators.contains { $0.association == .lun && ($0.type == .naa || $0.type == .eui64) }
            || (transport == .scsi && (wwid.map { $0.hasPrefix("3") || $0.hasPrefix("2") } ?? false))
    }
}

public struct Partition: Codable, Sendable, Equatable {
    public var name: String
    public var devnode: String
    public var devno: String
    @Nullable public var number: Int? = nil
    public var startBytes: UInt64
    public var sizeBytes: UInt64
    @Nullable public var fsType: String? = nil
    @Nullable public var uuid: String? = nil
    @Nullable public var label: String? = nil
    @Nullable public var usage: String? = nil
    @Nullable public var partUUID: String? = nil
    @Nullable public var partLabel: String? = nil
    public var mountpoints: [String]
    public var swap: Bool
    public var holders: [String]

    public init(name: String, devnode: String, devno: String) {
        self.name = name
        self.devnode = devnode
        self.devno = devno
        self.startBytes = 0
        self.sizeBytes = 0
        self.mountpoints = []
        self.swap = false
        self.holders = []
    }
}

public struct PartitionTable: Codable, Sendable, Equatable {
    public var type: String
    @Nullable public var uuid: String? = nil
    public init(type: String, uuid: String?) {
        self.type = type
        self.uuid = uuid
    }
}

extension Disk {
    public mutating func apply(_ probe: ProbeResult) {
        fsType = probe.fsType
        uuid = probe.uuid
        label = probe.label
        usage = probe.usage
        partitionTable = probe.partitionTable
    }
}

extension Partition {
    public mutating func apply(_ probe: ProbeResult) {
        fsType = probe.fsType
        uuid = probe.uuid
        label = probe.label
        usage = probe.usage
        partUUID = probe.partUUID
        partLabel = probe.partLabel
    }
}

/// What udevd recorded for the device, when udevd runs; never required.
public struct UdevProperties: Codable, Sendable, Equatable {
    @Nullable public var idSerial: String? = nil
    @Nullable public var idWWN: String? = nil
    public var devlinks: [String]
    public init(idSerial: String?, idWWN: String?, devlinks: [String]) {
        self.idSerial = idSerial
        self.idWWN = idWWN
        self.devlinks = devlinks
    }
}

/// What a filesystem probe (libblkid) found on a disk or partition.
public struct ProbeResult: Sendable, Equatable {
    public var fsType: String?
    public var uuid: String?
    public var label: String?
    public var usage: String?
    public var partUUID: String?
    public var partLabel: String?
    public var partitionTable: PartitionTable?

    public init(
        fsType: String? = nil, uuid: String? = nil, label: String? = nil, usage: String? = nil,
        partUUID: String? = nil, partLabel: String? = nil, partitionTable: PartitionTable? = nil
    ) {
        self.fsType = fsType
        self.uuid = uuid
        self.label = label
        self.usage = usage
        self.partUUID = partUUID
        self.partLabel = partLabel
        self.partitionTable = partitionTable
    }
}
