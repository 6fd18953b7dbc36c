import MTAgentCore

/// `multipath.conf`: multipath maps named by WWID (`user_friendly_names no`), every disk
/// considered (`find_multipaths no`), and the system disks blacklisted by WWID so multipathd
/// never takes the running system's disk over. Merged into the admin's file.
public struct MultipathStep: SetupStep {
    public let id = "multipath"
    public let title = "Configure multipath: user_friendly_names no, find_multipaths no, system disk blacklisted by WWID"
    public static let path = "/etc/multipath.conf"

    public init() {}

    public var rebootReason: String? {
        "multipathd applies the new \(Self.path) when it starts"
    }

    public func check(_ context: SetupContext) throws -> StepState {
        let blacklist: [MultipathConf.Blacklisted]
        switch Self.blacklist(context.inventory) {
        case .failure(let blocked): return .blocked(blocked.message)
        case .success(let disks): blacklist = disks
        }
        let existing = try ConfigText.read(Self.path, context.files)
        let merged = try MultipathConf.merge(existing, path: Self.path, blacklist: blacklist)
        if merged.changes.isEmpty { return .done }
        return .needed((existing == nil ? "create \(Self.path): " : "merge into \(Self.path): ") + merged.changes.joined(separator: "; "))
    }

    public func apply(_ context: SetupContext) throws -> StepOutcome {
        let blacklist = try Self.blacklist(context.inventory).get()
        let existing = try ConfigText.read(Self.path, context.files)
        let merged = try MultipathConf.merge(existing, path: Self.path, blacklist: blacklist)
        try context.files.write(Self.path, Array(merged.text.utf8), mode: context.files.mode(of: Self.path) ?? 0o644)
        return StepOutcome(
            summary: "\(existing == nil ? "created" : "merged into") \(Self.path): \(merged.changes.joined(separator: "; "))",
            rebootReason: rebootReason)
    }

    /// The system disks to blacklist: the disk under `/` must be there, and every physical system
    /// disk must have a WWID (a blacklist by device name would follow the name, not the disk).
    static func blacklist(_ inventory: Inventory) -> Result<[MultipathConf.Blacklisted], StepBlocked> {
        let system = SystemDisks(inventory)
        guard !system.root.isEmpty else {
            return .failure(StepBlocked(message: "no disk in the inventory holds / (is / on a disk of this machine?); setup cannot tell which disk to keep from multipath"))
        }
        let disks = system.root + system.physical.filter { p in !system.root.contains { $0.name == p.name } }
        if let missing = disks.first(where: { $0.wwid == nil }) {
            return .failure(StepBlocked(message: SystemDisks.noIdentity(missing)))
        }
        return .success(disks.map { disk in
            let holdsRoot = system.root.contains { $0.name == disk.name }
            return MultipathConf.Blacklisted(wwid: disk.wwid!, what: "system disk \(disk.name)\(holdsRoot ? ", holds /" : "")")
        })
    }
}
