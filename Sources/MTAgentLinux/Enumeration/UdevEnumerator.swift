import CUdev
import MTAgentCore

/// Enumerates block devices with libudev, the way the live system names them, and picks up
/// udevd's properties (`ID_SERIAL`, `ID_WWN`, `DEVLINKS`) when udevd has recorded them.
///
/// libudev objects are not thread-safe: everything happens inside `enumerate()` on the calling
/// thread, is copied into value types, and released before it returns.
public struct UdevEnumerator: BlockDeviceEnumerating {
    public var source: String { "udev" }

    public init() {}

    public func enumerate() throws -> [BlockDeviceEntry] {
        let context = try UdevContext()
        guard let enumerate = udev_enumerate_new(context.udev) else { throw DiscoveryError.udev("udev_enumerate_new failed") }
        defer { udev_enumerate_unref(enumerate) }
        udev_enumerate_add_match_subsystem(enumerate, "block")
        let rc = udev_enumerate_scan_devices(enumerate)
        guard rc >= 0 else { throw DiscoveryError.udev("scanning block devices failed (\(-rc))") }

        var entries: [BlockDeviceEntry] = []
        var item = udev_enumerate_get_list_entry(enumerate)
        while let current = item {
            defer { item = udev_list_entry_get_next(current) }
            guard let syspath = udev_list_entry_get_name(current),
                let device = udev_device_new_from_syspath(context.udev, syspath)
            else { continue }  // gone since the scan: skip
            defer { udev_device_unref(device) }
            entries.append(Self.entry(device, syspath: String(cString: syspath)))
        }
        return entries
    }

    private static func entry(_ device: OpaquePointer, syspath: String) -> BlockDeviceEntry {
        func string(_ p: UnsafePointer<CChar>?) -> String? { p.map { String(cString: $0) } }
        func property(_ key: String) -> String? { string(udev_device_get_property_value(device, key)) }

        let name = string(udev_device_get_sysname(device)) ?? Paths.basename(syspath)
        let isPartition = string(udev_device_get_devtype(device)) == "partition"
        var parent: String?
        if isPartition, let p = udev_device_get_parent_with_subsystem_devtype(device, "block", "disk") {
            parent = string(udev_device_get_sysname(p))  // borrowed from `device`, not unref'ed
        }
        let idSerial = property("ID_SERIAL")
        let idWWN = property("ID_WWN_WITH_EXTENSION") ?? property("ID_WWN")
        let links = property("DEVLINKS")?.split(separator: " ").map(String.init) ?? []
        let udev = idSerial == nil && idWWN == nil && links.isEmpty ? nil : UdevProperties(idSerial: idSerial, idWWN: idWWN, devlinks: links.sorted())
        return BlockDeviceEntry(
            name: name, sysPath: syspath, devnode: string(udev_device_get_devnode(device)) ?? "/dev/\(name)",
            isPartition: isPartition, parent: parent, udev: udev)
    }
}

/// Owns a `struct udev *` for one enumeration.
final class UdevContext {
    let udev: OpaquePointer

    init() throws {
        guard let u = udev_new() else { throw DiscoveryError.udev("udev_new failed") }
        udev = u
    }

    deinit { udev_unref(udev) }
}
