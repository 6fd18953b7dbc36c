import MTAgentLinux

/// Rebuilds the initramfs of the running kernel after lvm.conf or mdadm.conf changed: early boot
/// assembles md arrays and activates LVM from the copies inside it (Debian's mdadm.conf says
/// so in its header: "Run update-initramfs -u after updating this file").
///
/// Done when the image is newer than both files and the LVM and mdadm steps have nothing left
/// to change; the image's mtime is what survives a killed run.
public struct InitramfsStep: SetupStep {
    public let id = "initramfs"
    public let title = "Rebuild the initramfs so early boot uses the new lvm.conf and mdadm.conf"

    let sources: [SetupStep]
    /// Runs the rebuild; nil: only on the live machine (a `--root` tree is another machine).
    let live: Bool?

    public init(sources: [SetupStep] = [LVMFilterStep(), MdadmStep()], live: Bool? = nil) {
        self.sources = sources
        self.live = live
    }

    public var rebootReason: String? { "the rebuilt initramfs is used from the next boot" }

    struct Image {
        var path: String
        var command: [String]
    }

    static func image(_ context: SetupContext) -> Image? {
        guard let kernel = context.system.text("/proc/sys/kernel/osrelease"),
            let release = OSRelease.read(from: context.system)
        else { return nil }
        let family = [release.id] + release.idLike
        if family.contains(where: { ["debian", "ubuntu"].contains($0) }) {
            return Image(path: "/boot/initrd.img-\(kernel)", command: ["update-initramfs", "-u", "-k", kernel])
        }
        if family.contains(where: { ["rhel", "centos", "fedora", "rocky", "almalinux"].contains($0) }) {
            let path = "/boot/initramfs-\(kernel).img"
            return Image(path: path, command: ["dracut", "-f", path, kernel])
        }
        return nil
    }

    public func check(_ context: SetupContext) throws -> StepState {
        guard let image = Self.image(context) else {
            return .notApplicable("cannot tell this distribution's initramfs tool from /etc/os-release; rebuild the initramfs by hand if it holds lvm.conf or mdadm.conf")
        }
        guard let built = context.files.modificationTime(of: image.path) else {
            return .notApplicable("no initramfs at \(image.path) for the running kernel: nothing to rebuild")
        }
        var why: [String] = []
        for step in sources {
            if case .needed = try step.check(context) { why.append("\(step.id) changes") }
        }
        for config in [LVMFilterStep.path, MdadmStep.path(context.system)] {
            if let changed = context.files.modificationTime(of: config), changed > built { why.append("\(config) is newer") }
        }
        if why.isEmpty { return .done }
        let command = image.command.joined(separator: " ")
        guard live ?? (context.root == "/") else {
            return .notApplicable("\(image.path) is older than the configs (\(why.joined(separator: ", "))): on that machine run '\(command)'")
        }
        return .needed("run '\(command)' (\(why.joined(separator: ", ")))")
    }

    public func apply(_ context: SetupContext) throws -> StepOutcome {
        guard let image = Self.image(context) else { throw StepBlocked(message: "no initramfs tool known for this distribution") }
        try run(image.command, context)
        return StepOutcome(summary: "rebuilt \(image.path)", rebootReason: rebootReason)
    }

    /// The restored configs go back into the initramfs too.
    public func afterRevert(_ context: SetupContext) throws {
        guard live ?? (context.root == "/"), let image = Self.image(context), context.files.exists(image.path) else { return }
        try run(image.command, context)
    }

    private func run(_ command: [String], _ context: SetupContext) throws {
        context.logger.info("running", metadata: ["command": "\(command.joined(separator: " "))"])
        let result = try context.runner.run(command)
        guard result.status == 0 else {
            throw CommandError.failed(command.joined(separator: " "), status: result.status, stderr: result.stderr)
        }
    }
}
