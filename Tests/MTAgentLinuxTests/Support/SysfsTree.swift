import Glibc
import MTAgentLinux

/// Writes a kernel-shaped sysfs/procfs tree (relative symlinks, attribute files) for the edge
/// cases no real machine produces on demand: garbage VPD pages, missing attributes, disks that
/// vanish mid-enumeration.
struct SysfsTree {
    let root: String
    private let pci = "/sys/devices/pci0000:00/0000:00:10.0"

    init(root: String) throws {
        self.root = root
        try write("/proc/self/mountinfo", "22 1 8:1 / / rw,relatime - ext4 /dev/sda1 rw\n")
        try write("/proc/swaps", "Filename\tType\tSize\tUsed\tPriority\n")
        try write("/sys/class/dmi/id/sys_vendor", "VMware, Inc.\n")
        try write("/sys/class/dmi/id/product_name", "VMware Virtual Platform\n")
        try mkdirs("/sys/class/block")
    }

    func write(_ path: String, _ text: String) throws {
        try write(path, bytes: Array(text.utf8))
    }

    func write(_ path: String, bytes: [UInt8]) throws {
        try mkdirs(Paths.dirname(path))
        let fd = open(root + path, O_WRONLY | O_CREAT | O_TRUNC, 0o644)
        guard fd >= 0 else { throw ScratchError("open \(path)") }
        defer { close(fd) }
        _ = bytes.withUnsafeBytes { Glibc.write(fd, $0.baseAddress, $0.count) }
    }

    func mkdirs(_ path: String) throws {
        var current = root
        for c in path.split(separator: "/") {
            current += "/" + c
            if mkdir(current, 0o755) != 0 && errno != EEXIST { throw ScratchError("mkdir \(current)") }
        }
    }

    func link(_ path: String, to target: String) throws {
        try mkdirs(Paths.dirname(path))
        guard symlink(target, root + path) == 0 else { throw ScratchError("symlink \(path)") }
    }

    func remove(_ path: String) { _ = unlink(root + path) }

    /// A SCSI disk on a host driven by `driver`, with optional VPD pages, like the kernel lays it out.
    @discardableResult
    func scsiDisk(
        _ name: String, host: Int, target: Int, minor: Int, driver: String = "vmw_pvscsi",
        vpd83: [UInt8]? = nil, vpd80: [UInt8]? = nil, sizeSectors: Int = 2_097_152, type: Int = 0,
        partitions: Int = 0
    ) throws -> String {
        let hctl = "\(host):0:\(target):0"
        let hostDir = "\(pci)/host\(host)"
        let device = "\(hostDir)/target\(host):0:\(target)/\(hctl)"
        let block = "\(device)/block/\(name)"
        try write("\(hostDir)/scsi_host/host\(host)/proc_name", driver + "\n")
        if access(root + "/sys/class/scsi_host/host\(host)", F_OK) != 0 {
            try link("/sys/class/scsi_host/host\(host)", to: "../../devices/pci0000:00/0000:00:10.0/host\(host)/scsi_host/host\(host)")
        }
        try write("\(device)/vendor", "VMware  \n")
        try write("\(device)/model", "Virtual disk    \n")
        try write("\(device)/rev", "2.0 \n")
        try write("\(device)/type", "\(type)\n")
        try mkdirs("\(device)/scsi_device/\(hctl)")
        if let vpd83 { try write("\(device)/vpd_pg83", bytes: vpd83) }
        if let vpd80 { try write("\(device)/vpd_pg80", bytes: vpd80) }
        try write("\(block)/dev", "8:\(minor)\n")
        try write("\(block)/size", "\(sizeSectors)\n")
        try write("\(block)/ro", "0\n")
        try write("\(block)/removable", "0\n")
        try write("\(block)/queue/logical_block_size", "512\n")
        try write("\(block)/queue/physical_block_size", "512\n")
        try write("\(block)/queue/rotational", "1\n")
        try mkdirs("\(block)/holders")
        try mkdirs("\(block)/slaves")
        try link("\(block)/device", to: "../../../\(hctl)")
        let relative = String(block.dropFirst("/sys/".count))
        try link("/sys/class/block/\(name)", to: "../../\(relative)")
        for p in 0..<partitions {
            let part = "\(name)\(p + 1)"
            try write("\(block)/\(part)/dev", "8:\(minor + p + 1)\n")
            try write("\(block)/\(part)/partition", "\(p + 1)\n")
            try write("\(block)/\(part)/start", "\(2048 + p * 4096)\n")
            try write("\(block)/\(part)/size", "4096\n")
            try mkdirs("\(block)/\(part)/holders")
            try link("/sys/class/block/\(part)", to: "../../\(relative)/\(part)")
        }
        return block
    }
}
