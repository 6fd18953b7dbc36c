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
    public var hctl: String?
    /// SCSI peripheral device type (0 disk, 5 CD/DVD, 0xE RBC); nil for non-SCSI devices.
    public var scsiDeviceType: Int?
    public var driver: String?
    public var vendor: String?
    public var model: String?
    public var revision: String?
    public var sizeBytes: UInt64
    public var logicalBlockSize: Int
    public var physicalBlockSize: Int
    public var rotational: Bool?
    public var removable: Bool
    public var readOnly: Bool
    public var wwid: String?
    public var serial: String?
    public var designators: [Designator]
    /// The kernel's own `wwid` attribute, verbatim (evidence next to VPD 0x83).
    public var kernelWWID: String?
    public var udev: UdevProperties?
    public var partitionTable: PartitionTable?
    public var fsType: String?
    public var uuid: String?
    public var label: String?
    public var usage: String?
    public var mountpoints: [String]
    public var swap: Bool
    public var partitions: [Partition]
    public var holders: [String]
    public var slaves: [String]
    /// For device-mapper devices: `dm/name` and `dm/uuid` (multipath maps use `mpath-<wwid>`).
    public var dmName: String?
    public var dmUUID: String?
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
    public var number: Int?
    public var startBytes: UInt64
    public var sizeBytes: UInt64
    public var fsType: String?
    public var uuid: String?
    public var label: String?
    public var usage: String?
    public var partUUID: String?
    public var partLabel: String?
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
    public var uuid: String?
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
    public var idSerial: String?
    public var idWWN: String?
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

extension Disk {
    /// Encodes absent values as `null`: the JSON contract lists every field.
    public func encode(to encoder: any Encoder) throws {
        var c = encoder.container(keyedBy: CodingKeys.self)
        try c.encode(name, forKey: .name)
        try c.encode(devnode, forKey: .devnode)
        try c.encode(devno, forKey: .devno)
        try c.encode(transport, forKey: .transport)
        try c.encode(hctl, forKey: .hctl)
        try c.encode(scsiDeviceType, forKey: .scsiDeviceType)
        try c.encode(driver, forKey: .driver)
        try c.encode(vendor, forKey: .vendor)
        try c.encode(model, forKey: .model)
        try c.encode(revision, forKey: .revision)
        try c.encode(sizeBytes, forKey: .sizeBytes)
        try c.encode(logicalBlockSize, forKey: .logicalBlockSize)
        try c.encode(physicalBlockSize, forKey: .physicalBlockSize)
        try c.encode(rotational, forKey: .rotational)
        try c.encode(removable, forKey: .removable)
        try c.encode(readOnly, forKey: .readOnly)
        try c.encode(wwid, forKey: .wwid)
        try c.encode(serial, forKey: .serial)
        try c.encode(designators, forKey: .designators)
        try c.encode(kernelWWID, forKey: .kernelWWID)
        try c.encode(udev, forKey: .udev)
        try c.encode(partitionTable, forKey: .partitionTable)
        try c.encode(fsType, forKey: .fsType)
        try c.encode(uuid, forKey: .uuid)
        try c.encode(label, forKey: .label)
        try c.encode(usage, forKey: .usage)
        try c.encode(mountpoints, forKey: .mountpoints)
        try c.encode(swap, forKey: .swap)
        try c.encode(partitions, forKey: .partitions)
        try c.encode(holders, forKey: .holders)
        try c.encode(slaves, forKey: .slaves)
        try c.encode(dmName, forKey: .dmName)
        try c.encode(dmUUID, forKey: .dmUUID)
        try c.encode(role, forKey: .role)
        try c.encode(warnings, forKey: .warnings)
    }
}

extension Partition {
    /// Encodes absent values as `null`: the JSON contract lists every field.
    public func encode(to encoder: any Encoder) throws {
        var c = encoder.container(keyedBy: CodingKeys.self)
        try c.encode(name, forKey: .name)
        try c.encode(devnode, forKey: .devnode)
        try c.encode(devno, forKey: .devno)
        try c.encode(number, forKey: .number)
        try c.encode(startBytes, forKey: .startBytes)
        try c.encode(sizeBytes, forKey: .sizeBytes)
        try c.encode(fsType, forKey: .fsType)
        try c.encode(uuid, forKey: .uuid)
        try c.encode(label, forKey: .label)
        try c.encode(usage, forKey: .usage)
        try c.encode(partUUID, forKey: .partUUID)
        try c.encode(partLabel, forKey: .partLabel)
        try c.encode(mountpoints, forKey: .mountpoints)
        try c.encode(swap, forKey: .swap)
        try c.encode(holders, forKey: .holders)
    }
}

extension PartitionTable {
    /// Encodes absent values as `null`: the JSON contract lists every field.
    public func encode(to encoder: any Encoder) throws {
        var c = encoder.container(keyedBy: CodingKeys.self)
        try c.encode(type, forKey: .type)
        try c.encode(uuid, forKey: .uuid)
    }
}

extension UdevProperties {
    /// Encodes absent values as `null`: the JSON contract lists every field.
    public func encode(to encoder: any Encoder) throws {
        var c = encoder.container(keyedBy: CodingKeys.self)
        try c.encode(idSerial, forKey: .idSerial)
        try c.encode(idWWN, forKey: .idWWN)
        try c.encode(devlinks, forKey: .devlinks)
    }
}
