import Configuration
import Foundation
import MTAgentLinux

/// The settings `serve` and the other commands run with, from four sources, strongest first:
/// the command line (`serve --set KEY=VALUE`, `--log-level`), `MT_AGENT_<KEY>` environment
/// variables (`MT_AGENT_RPO_THRESHOLD=5m`; systemd's `Environment=`), the file, and the defaults.
///
/// swift-configuration's `ConfigReader` decides which source wins. The file keeps its own
/// `key = value` format (setup writes it, admins edit it), read by `AgentConfig.lines`; every value,
/// whatever its source, goes through the same check, and a bad one is reported as one line naming
/// where it came from: the file and line, the environment variable, or the option.
public struct AgentConfigSources: Sendable {
    public var path: String
    public var environment: [String: String]
    /// `key → value` given on the command line.
    public var commandLine: [String: String]

    public init(path: String = AgentPaths.config, environment: [String: String] = ProcessInfo.processInfo.environment,
                commandLine: [String: String] = [:]) {
        self.path = path
        self.environment = environment
        self.commandLine = commandLine
    }

    /// The environment variable that overrides `key`.
    public static func environmentName(_ key: String) -> String { "MT_AGENT_" + key.uppercased() }

    /// Parses `KEY=VALUE` as `serve --set` takes it.
    public static func assignment(_ text: String) throws -> (key: String, value: String) {
        guard let eq = text.firstIndex(of: "=") else {
            throw AgentConfigError(path: "--set", line: nil, key: nil, problem: "expected KEY=VALUE, found \"\(text)\"")
        }
        let key = String(text[..<eq]).trimmingWhitespace()
        if let problem = AgentConfig.unknownKey(key) {
            throw AgentConfigError(path: "--set", line: nil, key: key, problem: problem)
        }
        return (key, String(text[text.index(after: eq)...]).trimmingWhitespace())
    }

    /// Reads the file under the system root and resolves every key.
    public func load(from system: SystemFiles) throws -> AgentConfig {
        guard let bytes = system.read(path) else {
            throw AgentConfigError(path: path, line: nil, key: nil, problem: "missing or unreadable; run `mt-agent setup` to write it")
        }
        return try resolve(fileText: String(decoding: bytes, as: UTF8.self))
    }

    /// Resolves every key from the command line, the environment, this file text and the defaults.
    public func resolve(fileText: String) throws -> AgentConfig {
        let lines = try AgentConfig.lines(fileText, path: path)
        // The file must be valid on its own, even where an override hides a value: the override
        // may go away at the next start.
        var fileAlone = AgentConfig()
        for line in lines {
            if let problem = fileAlone.set(line.key, line.value) {
                throw AgentConfigError(path: path, line: line.number, key: line.key, problem: problem)
            }
        }
        for key in commandLine.keys.sorted() {
            if let problem = AgentConfig.unknownKey(key) {
                throw AgentConfigError(path: "--set", line: nil, key: key, problem: problem)
            }
        }
        func values(_ pairs: [(String, String)]) -> [AbsoluteConfigKey: ConfigValue] {
            Dictionary(pairs.map { (AbsoluteConfigKey(ConfigKey($0.0)), ConfigValue(.string($0.1), isSecret: false)) },
                       uniquingKeysWith: { $1 })
        }
        let reader = ConfigReader(providers: [
            InMemoryProvider(name: "command line", values: values(commandLine.map { ($0.key, $0.value) })),
            EnvironmentVariablesProvider(environmentVariables: environment).prefixKeys(with: ["mt", "agent"]),
            InMemoryProvider(name: path, values: values(lines.map { ($0.key, $0.value) })),
        ])
        var config = AgentConfig()
        for (key, _) in AgentConfig.keys {
            // Keys are plain snake_case names: one component each, never split on dots.
            guard let value = reader.string(forKey: ConfigKey([key])) else { continue }
            if let problem = config.set(key, value) {
                let (path, line) = source(of: key, lines: lines)
                throw AgentConfigError(path: path, line: line, key: key, problem: problem)
            }
        }
        return config
    }

    /// Where the value the reader chose for `key` came from, in the same order of strength: what an
    /// error about it names (a file line only for the file).
    private func source(of key: String, lines: [AgentConfig.Line]) -> (path: String, line: Int?) {
        if commandLine[key] != nil { return ("--set", nil) }
        if environment[Self.environmentName(key)] != nil { return ("environment \(Self.environmentName(key))", nil) }
        return (path, lines.first { $0.key == key }?.number)
    }
}

extension AgentConfig {
    /// Reads the config under the system root, with the process's `MT_AGENT_*` environment.
    public static func load(from system: SystemFiles, path: String = AgentPaths.config) throws -> AgentConfig {
        try AgentConfigSources(path: path).load(from: system)
    }

    /// The keys `serve` applies on SIGHUP; any other changed key needs a restart.
    public static let reloadableKeys: Set<String> = ["rpo_threshold", "retention_window", "app_consistent_frequency",
                                                     "space_policy", "log_level"]

    /// The keys whose values differ between two configurations, in file order.
    public func changedKeys(to other: AgentConfig) -> [String] {
        Self.keys.map(\.key).filter { value(of: $0) != other.value(of: $0) }
    }
}
