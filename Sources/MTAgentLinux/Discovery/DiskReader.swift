import MTAgentCore

/// Reads one disk's sysfs attributes into a `Disk`: transport, SCSI address and HBA driver,
/// vendor strings, sizes, and every piece of identity evidence (VPD 0x83/0x80, `wwid`, NVMe ids).
struct DiskReader {
    let files: SystemFiles

    /// nil when the device vanished between enumeration and reading (no `dev` attribute left).
    func disk(_ entry: BlockDeviceEntry) -> Disk? {
        let sys = entry.sysPath
        guard let devno = files.text("\(sys)/dev") else { return nil }
        var disk = Disk(name: entry.name, devnode: entry.devnode, devno: devno, transport: .other)
        disk.udev = entry.udev
        disk.sizeBytes = sectors("\(sys)/size")
        disk.logicalBlockSize = files.text("\(sys)/queue/logical_block_size").flatMap { Int($0) } ?? 512
        disk.physicalBlockSize = files.text("\(sys)/queue/physical_block_size").flatMap { Int($0) } ?? disk.logicalBlockSize
        disk.rotational = files.text("\(sys)/queue/rotational").map { $0 == "1" }
        disk.removable = files.text("\(sys)/removable") == "1"
        disk.readOnly = files.text("\(sys)/ro") == "1"
        disk.holders = files.list("\(sys)/holders") ?? []
        disk.slaves = files.list("\(sys)/slaves") ?? []

        let device = files.resolve("\(sys)/device")
        disk.transport = transport(name: entry.name, device: device)
        switch disk.transport {
        case .scsi:
            readSCSI(&disk, device: device!)
        case .nvme:
            readNVMe(&disk, sys: sys)
        case .virtio:
            disk.serial = files.text("\(sys)/serial")
            disk.driver = device.flatMap(driver(of:))
        case .dm:
            disk.dmName = files.text("\(sys)/dm/name")
            disk.dmUUID = files.text("\(sys)/dm/uuid")
        default:
            disk.driver = device.flatMap(driver(of:))
        }
        return disk
    }

    func partition(_ entry: BlockDeviceEntry) -> Partition? {
        let sys = entry.sysPath
        guard let devno = files.text("\(sys)/dev") else { return nil }
        var part = Partition(name: entry.name, devnode: entry.devnode, devno: devno)
        part.number = files.text("\(sys)/partition").flatMap { Int($0) }
        part.startBytes = sectors("\(sys)/start")
        part.sizeBytes = sectors("\(sys)/size")
        part.holders = files.list("\(sys)/holders") ?? []
        return part
    }

    /// sysfs counts `size` and `start` in 512-byte sectors whatever the logical block size.
    private func sectors(_ path: String) -> UInt64 {
        (files.text(path).flatMap { UInt64($0) } ?? 0) * 512
    }

    private func transport(name: String, device: String?) -> Disk.Transport {
        for (prefix, t) in [("loop", Disk.Transport.loop), ("zram", .zram), ("dm-", .dm), ("md", .md), ("ram", .ram), ("nvme", .nvme)]
        where name.hasPrefix(prefix) {
            return t
        }
        guard let device else { return .other }
        // Every SCSI device has a peripheral `type`; an H:C:T:L name alone could be anything.
        if Self.isHCTL(Paths.basename(device)) && files.text("\(device)/type") != nil { return .scsi }
        if device.contains("/virtio") { return .virtio }
        return .other
    }

    private func readSCSI(_ disk: inout Disk, device: String) {
        disk.hctl = Paths.basename(device)
        disk.scsiDeviceType = files.text("\(device)/type").flatMap { Int($0) }
        disk.vendor = files.text("\(device)/vendor")
        disk.model = files.text("\(device)/model")
        disk.revision = files.text("\(device)/rev")
        disk.driver = hostComponent(of: device).flatMap { files.text("/sys/class/scsi_host/\($0)/proc_name") }

        if let page = files.read("\(device)/vpd_pg83") {
            let decoded = VPDPage.decodeDeviceIdentification(page)
            disk.designators = decoded.designators
            disk.warnings += decoded.warnings.map { "\(disk.name): \($0)" }
        }
        if let page = files.read("\(device)/vpd_pg80") {
            disk.serial = VPDPage.decodeUnitSerial(page)
        }
        disk.kernelWWID = files.text("\(device)/wwid")
        disk.wwid = WWID.from(designators: disk.designators) ?? disk.kernelWWID.flatMap(WWID.from(kernelWWID:))
    }

    private func readNVMe(_ disk: inout Disk, sys: String) {
        let controller = files.resolve("\(sys)/device")
        disk.model = controller.flatMap { files.text("\($0)/model") }
        disk.revision = controller.flatMap { files.text("\($0)/firmware_rev") }
        disk.serial = controller.flatMap { files.text("\($0)/serial") }
        disk.driver = controller.flatMap(driver(of:))
        // nguid/eui/uuid print as "00 11 …", "0011…-…" or a UUID; all-zero means "not reported".
        func hexID(_ attr: String) -> String? {
            guard let raw = files.text("\(sys)/\(attr)") else { return nil }
            let hex = String(raw.lowercased().filter { $0.isHexDigit })
            return hex.allSatisfy({ $0 == "0" }) ? nil : hex
        }
        if let nguid = hexID("nguid") {
            disk.designators.append(Designator(type: .eui64, codeSet: .binary, association: .lun, value: nguid))
        }
        if let eui = hexID("eui") {
            disk.designators.append(Designator(type: .eui64, codeSet: .binary, association: .lun, value: eui))
        }
        if let uuid = files.text("\(sys)/uuid"), uuid.contains(where: { $0 != "0" && $0 != "-" }) {
            disk.designators.append(Designator(type: .uuid, codeSet: .binary, association: .lun, value: uuid.lowercased()))
        }
        // NVMe is not SCSI: its identity is the kernel's own `wwid` (eui.…, uuid.…, nvme.…), the
        // name /dev/disk/by-id/nvme-… and multipath use.
        disk.kernelWWID = files.text("\(sys)/wwid")
        disk.wwid = disk.kernelWWID ?? WWID.from(designators: disk.designators)
    }

    /// The `hostN` directory above a SCSI device: its `scsi_host` class names the HBA driver.
    private func hostComponent(of device: String) -> String? {
        device.split(separator: "/").last { $0.hasPrefix("host") && Int($0.dropFirst(4)) != nil }.map(String.init)
    }

    /// The bound driver of a device or of its nearest ancestor that has one: the name the
    /// `driver` link points at (read as text: the driver's own directory need not be captured).
    private func driver(of device: String) -> String? {
        var path = device
        for _ in 0..<3 {
            if let driver = files.linkTarget("\(path)/driver") { return Paths.basename(driver) }
            path = Paths.dirname(path)
        }
        return nil
    }

    static func isHCTL(_ s: String) -> Bool {
        let parts = s.split(separator: ":", omittingEmptySubsequences: false)
        return parts.count == 4 && parts.allSatisfy { !$0.isEmpty && $0.allSatisfy(\.isNumber) }
    }
}
