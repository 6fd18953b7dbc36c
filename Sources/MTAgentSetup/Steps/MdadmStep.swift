import MTAgentCore
import MTAgentLinux

/// mdadm assembles only the system's own arrays. Replicated disks carry the source machine's md
/// superblocks; udev's incremental assembly would start those arrays on the master target.
///
/// Mechanism: `AUTO -all` with an ARRAY line for each system array, rather than
/// `AUTO +homehost -all`: the homehost is the source machine's hostname, and a source with the
/// same hostname as the master target (or the common `localhost.localdomain`) would pass it.
/// The file is `/etc/mdadm.conf` on RHEL and `/etc/mdadm/mdadm.conf` on Debian and Ubuntu.
public struct MdadmStep: SetupStep {
    public let id = "mdadm"
    public let title = "Limit md auto-assembly to the system's own arrays (AUTO -all in mdadm.conf)"

    /// Runs `mdadm --detail --brief` for the system arrays' ARRAY lines; on a `--root` tree
    /// (nil: decided by the root) there is no mdadm to ask.
    let live: Bool?

    public init(live: Bool? = nil) {
        self.live = live
    }

    public var rebootReason: String? {
        "md arrays already assembled from replicated disks stay until a reboot"
    }

    public static func path(_ system: SystemFiles) -> String {
        if let release = OSRelease.read(from: system) {
            let family = [release.id] + release.idLike
            if family.contains(where: { ["debian", "ubuntu"].contains($0) }) { return "/etc/mdadm/mdadm.conf" }
            if family.contains(where: { ["rhel", "centos", "fedora", "rocky", "almalinux"].contains($0) }) {
                return "/etc/mdadm.conf"
            }
        }
        return system.exists("/etc/mdadm") ? "/etc/mdadm/mdadm.conf" : "/etc/mdadm.conf"
    }

    public func check(_ context: SetupContext) throws -> StepState {
        let path = Self.path(context.system)
        let arrays: [String]
        switch try arrayLines(context) {
        case .failure(let blocked): return .blocked(blocked.message)
        case .success(let lines): arrays = lines
        }
        let existing = try ConfigText.read(path, context.files)
        let merged = MdadmConf.merge(existing, arrays: arrays)
        if merged.changes.isEmpty { return .done }
        return .needed((existing == nil ? "create \(path): " : "merge into \(path): ") + merged.changes.joined(separator: "; "))
    }

    public func apply(_ context: SetupContext) throws -> StepOutcome {
        let path = Self.path(context.system)
        let arrays = try arrayLines(context).get()
        let existing = try ConfigText.read(path, context.files)
        let merged = MdadmConf.merge(existing, arrays: arrays)
        try context.files.write(path, Array(merged.text.utf8), mode: context.files.mode(of: path) ?? 0o644)
        return StepOutcome(
            summary: "\(existing == nil ? "created" : "merged into") \(path): \(merged.changes.joined(separator: "; "))",
            rebootReason: rebootReason)
    }

    /// The ARRAY lines of the md arrays the system lives on.
    private func arrayLines(_ context: SetupContext) throws -> Result<[String], StepBlocked> {
        let arrays = SystemDisks(context.inventory).all.filter { $0.transport == .md }
        guard !arrays.isEmpty else { return .success([]) }
        guard live ?? (context.root == "/") else {
            let names = arrays.map(\.name).joined(separator: ", ")
            return .failure(.init(message: "the system runs on md array(s) \(names), whose ARRAY lines only mdadm on the machine can tell: run setup on the machine itself, not with --root"))
        }
        var lines: [String] = []
        for array in arrays {
            let result = try context.runner.run(["mdadm", "--detail", "--brief", array.devnode])
            guard result.status == 0, let line = result.stdout.split(separator: "\n").first(where: { $0.hasPrefix("ARRAY ") }) else {
                throw CommandError.failed("mdadm --detail --brief \(array.devnode)", status: result.status, stderr: result.stderr)
            }
            lines.append(String(line))
        }
        return .success(lines)
    }
}
