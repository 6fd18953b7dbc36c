/// The machine as discovery saw it; the `disks --json` document.
public struct Inventory: Codable, Sendable, Equatable {
    public var host: Host
    public var disks: [Disk]
    /// Problems that concern no single disk (e.g. an unreadable /proc/swaps).
    public var warnings: [String]

    public init(host: Host, disks: [Disk], warnings: [String] = []) {
        self.host = host
        self.disks = disks
        self.warnings = warnings
    }
}

public struct Host: Codable, Sendable, Equatable {
    @Nullable public var hypervisor: String? = nil
    @Nullable public var hostname: String? = nil
    @Nullable public var kernel: String? = nil
    @Nullable public var os: String? = nil
    @Nullable public var systemVendor: String? = nil
    @Nullable public var productName: String? = nil
    /// "/" for the live machine, else the `--root` the inventory was read from.
    public var root: String
    /// How block devices were enumerated: "udev" (live) or "sysfs" (a `--root` tree).
    public var source: String
    public var udevRunning: Bool

    public init(
        hypervisor: String? = nil, hostname: String? = nil, kernel: String? = nil, os: String? = nil,
        systemVendor: String? = nil, productName: String? = nil, root: String = "/", source: String = "sysfs",
        udevRunning: Bool = false
    ) {
        self.hypervisor = hypervisor
        self.hostname = hostname
        self.kernel = kernel
        self.os = os
        self.systemVendor = systemVendor
        self.productName = productName
        self.root = root
        self.source = source
        self.udevRunning = udevRunning
    }

    /// Names the hypervisor from DMI strings (`/sys/class/dmi/id`) and `/sys/hypervisor/type`.
    /// Returns nil on bare metal or when nothing says otherwise.
    public static func hypervisor(
        systemVendor: String?, productName: String?, xenType: String?, cpuHypervisorFlag: Bool
    ) -> String? {
        let vendor = (systemVendor ?? "").lowercased()
        let product = (productName ?? "").lowercased()
        if vendor.contains("vmware") || product.contains("vmware") { return "vmware" }
        if vendor.contains("microsoft") && product.contains("virtual") { return "hyperv" }
        if vendor.contains("xen") || xenType?.trimmingWhitespace() == "xen" { return "xen" }
        if vendor.contains("qemu") || product.contains("kvm") || vendor.contains("red hat")
            || product.contains("standard pc") || vendor.contains("amazon ec2") || vendor.contains("google")
        {
            return "kvm"
        }
        if vendor.contains("innotek") || product.contains("virtualbox") { return "virtualbox" }
        if vendor.contains("parallels") { return "parallels" }
        return cpuHypervisorFlag ? "unknown" : nil
    }
}
