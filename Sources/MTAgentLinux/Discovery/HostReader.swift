import MTAgentCore

/// Reads what the inventory says about the machine itself: hypervisor, names, versions.
struct HostReader {
    let files: SystemFiles

    func host(source: String) -> Host {
        let vendor = files.text("/sys/class/dmi/id/sys_vendor")
        let product = files.text("/sys/class/dmi/id/product_name")
        let cpuFlag =
            files.text("/proc/cpuinfo")?.split(separator: "\n").first { $0.hasPrefix("flags") }?
            .split(separator: " ").contains("hypervisor") ?? false
        return Host(
            hypervisor: Host.hypervisor(
                systemVendor: vendor, productName: product, xenType: files.text("/sys/hypervisor/type"),
                cpuHypervisorFlag: cpuFlag),
            hostname: files.text("/proc/sys/kernel/hostname"),
            kernel: files.text("/proc/sys/kernel/osrelease"),
            os: osRelease(),
            systemVendor: vendor,
            productName: product,
            root: files.root,
            source: source,
            udevRunning: files.root == "/" && files.exists("/run/udev/control"))
    }

    private func osRelease() -> String? {
        let text = files.text("/etc/os-release") ?? files.text("/usr/lib/os-release")
        guard let line = text?.split(separator: "\n").first(where: { $0.hasPrefix("PRETTY_NAME=") }) else { return nil }
        let value = line.dropFirst("PRETTY_NAME=".count)
        return String(value.filter { $0 != "\"" && $0 != "'" })
    }
}
