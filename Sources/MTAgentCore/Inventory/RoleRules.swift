/// Decides what each disk is for. Only `system` and `free` exist until pairs are assigned.
public enum RoleRules {
    /// Mount points that make the disk under them part of the running system.
    public static let systemMountPoints: Set<String> = ["/", "/boot", "/boot/efi", "/usr", "/var"]

    /// A disk is `system` when it, one of its partitions, or anything stacked on them (LVM, md,
    /// dm — followed through `holders` to any depth) is mounted at a system mount point or is swap.
    public static func assignRoles(_ disks: [Disk]) -> [Disk] {
        let byName = Dictionary(disks.map { ($0.name, $0) }, uniquingKeysWith: { first, _ in first })
        var memo: [String: Bool] = [:]

        func isSystem(_ name: String, visiting: Set<String>) -> Bool {
            if let known = memo[name] { return known }
            guard let disk = byName[name], !visiting.contains(name) else { return false }
            let visiting = visiting.union([name])
            let own = holdsSystem(mountpoints: disk.mountpoints, swap: disk.swap)
                || disk.partitions.contains { holdsSystem(mountpoints: $0.mountpoints, swap: $0.swap) }
            let stacked = (disk.holders + disk.partitions.flatMap(\.holders)).contains {
                isSystem($0, visiting: visiting)
            }
            memo[name] = own || stacked
            return own || stacked
        }

        return disks.map { disk in
            var disk = disk
            disk.role = isSystem(disk.name, visiting: []) ? .system : .free
            return disk
        }
    }

    static func holdsSystem(mountpoints: [String], swap: Bool) -> Bool {
        swap || mountpoints.contains { systemMountPoints.contains($0) }
    }
}
