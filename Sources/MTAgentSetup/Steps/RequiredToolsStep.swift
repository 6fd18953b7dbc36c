/// Makes sure the storage tools a master target needs are installed. It installs them only when
/// the admin passed `--install-packages`; otherwise it stops setup with the command to run.
public struct RequiredToolsStep: SetupStep {
    public let id = "packages"
    public let title = "Check the required tools: lsscsi, multipath, lvm2, kpartx, xfsprogs, e2fsprogs (kexec-tools optional)"

    public init() {}

    public func check(_ context: SetupContext) throws -> StepState {
        let missing = RequiredTool.missing(in: context.system)
        if missing.isEmpty { return .done }
        let required = missing.filter(\.required)
        let names = missing.map { $0.executable + ($0.required ? "" : " (optional)") }.joined(separator: ", ")
        guard let manager = manager(context) else {
            let text = "missing \(names); install packages "
                + "\(missing.map(\.debianPackage).joined(separator: " ")) (Debian names) or "
                + "\(missing.map(\.rhelPackage).joined(separator: " ")) (RHEL names) with this distribution's package manager"
            return required.isEmpty ? .notApplicable(text) : .blocked(text)
        }
        let command = manager.installCommandLine(missing.map { $0.package(for: manager) })
        if context.options.installPackages {
            return .needed("install \(names): \(command)")
        }
        if required.isEmpty {
            let optional = missing.map(\.executable).joined(separator: ", ")
            return .notApplicable("optional \(optional) not installed (kdump needs it); to install: \(command)")
        }
        return .blocked("missing \(names); run: \(command)  (or rerun setup with --install-packages)")
    }

    public func apply(_ context: SetupContext) throws -> StepOutcome {
        let missing = RequiredTool.missing(in: context.system)
        guard let manager = manager(context) else {
            throw RequiredToolsError.noPackageManager(missing.map(\.executable))
        }
        let packages = missing.map { $0.package(for: manager) }
        for argv in manager.installCommands(packages) {
            context.logger.info("running package manager", metadata: ["command": "\(argv.joined(separator: " "))"])
            let result = try context.runner.run(argv)
            guard result.status == 0 else {
                let err = result.stderr.split(separator: "\n").last.map(String.init) ?? ""
                throw RequiredToolsError.installFailed(argv.joined(separator: " "), status: result.status, stderr: err)
            }
        }
        let still = RequiredTool.missing(in: context.system).filter(\.required)
        guard still.isEmpty else { throw RequiredToolsError.stillMissing(still.map(\.executable)) }
        return StepOutcome(summary: "installed \(packages.joined(separator: " "))")
    }

    private func manager(_ context: SetupContext) -> PackageManager? {
        OSRelease.read(from: context.system).flatMap(PackageManager.forRelease)
    }
}

public enum RequiredToolsError: Error, Equatable, CustomStringConvertible {
    case noPackageManager([String])
    case installFailed(String, status: Int32, stderr: String)
    case stillMissing([String])

    public var description: String {
        switch self {
        case .noPackageManager(let tools):
            "cannot tell this distribution's package manager from /etc/os-release; install \(tools.joined(separator: ", ")) by hand"
        case .installFailed(let command, let status, let stderr):
            "\(command) exited with status \(status)" + (stderr.isEmpty ? "" : ": \(stderr)")
        case .stillMissing(let tools):
            "\(tools.joined(separator: ", ")) still missing after the install; check the package repositories"
        }
    }
}
