/// Writes the documented default `/etc/mt-agent/mt-agent.conf`. A config that exists is the
/// admin's: setup never rewrites it, and stops with the parser's one line when it is broken.
public struct ConfigFileStep: SetupStep {
    public let id = "config"
    public let title = "Write the default config \(AgentPaths.config)"

    public init() {}

    public func check(_ context: SetupContext) throws -> StepState {
        guard let bytes = context.files.read(AgentPaths.config) else {
            return .needed("write \(AgentPaths.config) (listen 0.0.0.0:9443, retention \(context.options.retentionPath))")
        }
        do {
            _ = try AgentConfig.parse(String(decoding: bytes, as: UTF8.self))
            return .done
        } catch {
            return .blocked("\(error); fix the file, or move it away for setup to write the default")
        }
    }

    public func apply(_ context: SetupContext) throws -> StepOutcome {
        let text = AgentConfig(retentionPath: context.options.retentionPath).render()
        try context.files.write(AgentPaths.config, Array(text.utf8), mode: 0o644)
        context.logger.info("wrote config", metadata: ["file": "\(AgentPaths.config)"])
        return StepOutcome(summary: "wrote \(AgentPaths.config)")
    }
}
