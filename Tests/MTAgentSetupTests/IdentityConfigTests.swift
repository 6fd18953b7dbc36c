import Foundation
import MTAgentLinux
import Testing

@testable import MTAgentSetup

@Suite("mt-agent.conf", .tags(.small))
struct IdentityConfigTests {
    @Test func defaultRendersDocumentedAndRoundTrips() throws {
        let config = AgentConfig(retentionPath: "/srv/retention")
        let text = config.render()
        for line in [
            "listen_address = 0.0.0.0", "port = 9443", "retention_path = /srv/retention", "rpo_threshold = 15m",
            "retention_window = 24h", "app_consistent_frequency = 60m", "space_policy = prune-oldest",
            "tls_certificate = /etc/mt-agent/tls/cert.pem", "tls_key = /etc/mt-agent/tls/key.pem",
            "passphrase_key = /etc/mt-agent/passphrase.key",
        ] {
            #expect(text.contains("\n\(line)\n"), "missing \(line)")
        }
        // Every key carries a comment above it.
        #expect(text.split(separator: "\n").filter { $0.hasPrefix("# ") }.count >= AgentConfig.keys.count)
        let parsed = try AgentConfig.parse(text)
        #expect(parsed == config)
        #expect(parsed.rpoThreshold.seconds == 900)
        #expect(parsed.retentionWindow.seconds == 86400)
        #expect(parsed.appConsistentFrequency.seconds == 3600)
        #expect(parsed.render() == text)
    }

    /// The limits on what peers may cost (docs/PROTOCOL.md §3.3): defaults, values, refusals.
    @Test func peerLimits() throws {
        let defaults = AgentConfig()
        #expect(defaults.handshakeTimeout.seconds == 10 && defaults.maxConnections == 1024 && defaults.maxUnauthenticatedConnections == 64)
        #expect(defaults.authChecksPerSecond == 20 && defaults.maxPendingBytes.bytes == 256 << 20)
        let config = try AgentConfig.parse("""
            handshake_timeout = 30s
            max_connections = 200
            max_unauthenticated_connections = 8
            auth_checks_per_second = 5
            max_pending_bytes = 1G
            """)
        #expect(config.handshakeTimeout.seconds == 30 && config.maxConnections == 200 && config.maxUnauthenticatedConnections == 8)
        #expect(config.authChecksPerSecond == 5 && config.maxPendingBytes.bytes == 1 << 30)
        #expect(try AgentConfig.parse(config.render()) == config)
        for (text, problem) in [
            ("handshake_timeout = 2h", "handshake_timeout: \"2h\" is longer than 1h"),
            ("max_connections = 0", "max_connections: \"0\" is not a whole number from 1 to 1000000"),
            ("auth_checks_per_second = many", "auth_checks_per_second: \"many\" is not a whole number from 1 to 10000"),
            ("max_pending_bytes = 512K", "max_pending_bytes: \"512K\" is not a size of at least 1M"),
            ("max_pending_bytes = 9999999999999G", "max_pending_bytes: \"9999999999999G\" is not a size"),
        ] {
            #expect(throws: AgentConfigError.self) { try AgentConfig.parse(text) }
            do { _ = try AgentConfig.parse(text) } catch { #expect("\(error)".contains(problem), "\(error)") }
        }
    }

    /// The packaged default config is what setup writes.
    @Test func packagedConfigIsTheDefault() throws {
        let path = URL(fileURLWithPath: #filePath).deletingLastPathComponent().appendingPathComponent("../../Packaging/config/mt-agent.conf").path
        let packaged = try String(contentsOfFile: path, encoding: .utf8)
        #expect(packaged == AgentConfig().render())
    }

    @Test func editedValuesAndOmittedKeys() throws {
        let config = try AgentConfig.parse("""
            # only a few keys
            port=10443
              listen_address =  ::1   
            rpo_threshold = 90s
            retention_window = 7d
            space_policy = stop
            metrics_address = [::1]:9100
            log_level = debug
            """)
        #expect(config.metricsAddress == HostPort(host: "::1", port: 9100))
        #expect(config.logLevel == "debug")
        #expect(config.port == 10443)
        #expect(config.listenAddress == "::1")
        #expect(config.rpoThreshold.seconds == 90)
        #expect(config.retentionWindow.seconds == 7 * 86400)
        #expect(config.spacePolicy == .stop)
        #expect(config.retentionPath == "/mnt/retention")  // default kept
        #expect(config.tlsKey == AgentPaths.tlsKey)
    }

    @Test(arguments: [
        ("port = 99999", "/etc/mt-agent/mt-agent.conf line 2: port: \"99999\" is not a TCP port (1–65535)"),
        ("port = nine", "/etc/mt-agent/mt-agent.conf line 2: port: \"nine\" is not a TCP port (1–65535)"),
        ("listen_address = example.com", "/etc/mt-agent/mt-agent.conf line 2: listen_address: \"example.com\" is not an IPv4 or IPv6 address"),
        ("rpo_threshold = 15x", "/etc/mt-agent/mt-agent.conf line 2: rpo_threshold: \"15x\" is not a duration (e.g. 30s, 15m, 24h, 7d)"),
        ("retention_window = 0h", "/etc/mt-agent/mt-agent.conf line 2: retention_window: \"0h\" is not a duration (e.g. 30s, 15m, 24h, 7d)"),
        ("space_policy = delete-all", "/etc/mt-agent/mt-agent.conf line 2: space_policy: \"delete-all\" is not one of prune-oldest, stop"),
        ("retention_path = mnt/retention", "/etc/mt-agent/mt-agent.conf line 2: retention_path: \"mnt/retention\" is not an absolute path"),
        ("tls_key =", "/etc/mt-agent/mt-agent.conf line 2: tls_key: no value"),
        ("prot = 9443", "/etc/mt-agent/mt-agent.conf line 2: prot: unknown key (known: listen_address, port, retention_path, rpo_threshold, retention_window, app_consistent_frequency, space_policy, tls_certificate, tls_key, passphrase_key, metrics_address, log_level, handshake_timeout, max_connections, max_unauthenticated_connections, auth_checks_per_second, max_pending_bytes, allow_file_targets, undo_set_max_ranges)"),
        ("metrics_address = localhost:9464", "/etc/mt-agent/mt-agent.conf line 2: metrics_address: \"localhost:9464\" is not HOST:PORT (e.g. 127.0.0.1:9464, [::1]:9464) or off"),
        ("metrics_address = 127.0.0.1:0", "/etc/mt-agent/mt-agent.conf line 2: metrics_address: \"127.0.0.1:0\" is not HOST:PORT (e.g. 127.0.0.1:9464, [::1]:9464) or off"),
        ("metrics_address = ::1:9464", "/etc/mt-agent/mt-agent.conf line 2: metrics_address: \"::1:9464\" is not HOST:PORT (e.g. 127.0.0.1:9464, [::1]:9464) or off"),
        ("log_level = loud", "/etc/mt-agent/mt-agent.conf line 2: log_level: \"loud\" is not one of trace, debug, info, notice, warning, error, critical"),
        ("undo_set_max_ranges = 0", "/etc/mt-agent/mt-agent.conf line 2: undo_set_max_ranges: \"0\" is not a number of ranges from 1 to 16777216"),
        ("port 9443", "/etc/mt-agent/mt-agent.conf line 2: expected `key = value`, found \"port 9443\""),
        ("port = 9443\nport = 9444", "/etc/mt-agent/mt-agent.conf line 3: port: set twice"),
    ])
    func badInputIsOneLineNamingKeyAndProblem(line: String, message: String) {
        do {
            _ = try AgentConfig.parse("# edited\n" + line + "\n")
            Issue.record("accepted \(line)")
        } catch {
            #expect("\(error)" == message)
            #expect(!"\(error)".contains("\n"))
        }
    }

    @Test func loadMissingSaysWhatToDo() throws {
        let root = try IdentityScratchRoot()
        #expect(throws: AgentConfigError(path: AgentPaths.config, line: nil, key: nil, problem: "missing or unreadable; run `mt-agent setup` to write it")) {
            try AgentConfig.load(from: RootedFiles(root: root.root))
        }
    }

    @Test func stepWritesOnceAndNeverOverwrites() throws {
        let root = try IdentityScratchRoot()
        var options = SetupOptions()
        options.retentionPath = "/data/retention"
        let context = identityContext(root, options: options)
        let step = ConfigFileStep()
        guard case .needed = try step.check(context) else {
            Issue.record("a missing config should be needed")
            return
        }
        _ = try step.apply(context)
        #expect(root.mode(AgentPaths.config) == 0o644)
        #expect(try AgentConfig.load(from: context.system).retentionPath == "/data/retention")
        #expect(try step.check(context) == .done)

        // The admin's edit stays; a broken edit blocks with the parser's line, and nothing is written.
        try root.put(AgentPaths.config, "port = 10443\n")
        #expect(try step.check(context) == .done)
        try root.put(AgentPaths.config, "port = 10443\nspace_policy = yolo\n")
        let writes = root.writes.count
        #expect(try step.check(context) == .blocked(
            "/etc/mt-agent/mt-agent.conf line 2: space_policy: \"yolo\" is not one of prune-oldest, stop; fix the file, or move it away for setup to write the default"))
        #expect(root.writes.count == writes)
        #expect(root.text(AgentPaths.config) == "port = 10443\nspace_policy = yolo\n")
    }
}

@Suite("configuration sources")
struct ConfigSourcesTests {
    let file = """
        # admin's file
        port = 10443
        rpo_threshold = 10m
        log_level = notice
        """

    @Test func strongestSourceWinsKeyByKey() throws {
        let sources = AgentConfigSources(path: "/etc/mt-agent/mt-agent.conf",
                                         environment: ["MT_AGENT_RPO_THRESHOLD": "7m", "MT_AGENT_LOG_LEVEL": "debug", "RPO_THRESHOLD": "1s"],
                                         commandLine: ["rpo_threshold": "5m"])
        let config = try sources.resolve(fileText: file)
        #expect(config.rpoThreshold.seconds == 300)  // command line over environment over file
        #expect(config.logLevel == "debug")  // environment over file
        #expect(config.port == 10443)  // file over default
        #expect(config.retentionWindow.seconds == 86400)  // default
    }

    @Test func everyKeyHasItsEnvironmentVariable() throws {
        let values: [String: String] = [
            "listen_address": "::1", "port": "9555", "retention_path": "/srv/ret", "rpo_threshold": "3m",
            "retention_window": "2d", "app_consistent_frequency": "20m", "space_policy": "stop",
            "tls_certificate": "/x/cert.pem", "tls_key": "/x/key.pem", "passphrase_key": "/x/pass.key",
            "metrics_address": "off", "log_level": "error",
            "handshake_timeout": "20s", "max_connections": "100", "max_unauthenticated_connections": "10",
            "auth_checks_per_second": "7", "max_pending_bytes": "64M", "allow_file_targets": "true", "undo_set_max_ranges": "4096",
        ]
        #expect(Set(values.keys) == Set(AgentConfig.keys.map(\.key)))
        var environment: [String: String] = [:]
        for (key, value) in values { environment[AgentConfigSources.environmentName(key)] = value }
        #expect(environment["MT_AGENT_APP_CONSISTENT_FREQUENCY"] == "20m")
        let config = try AgentConfigSources(environment: environment).resolve(fileText: "")
        for (key, value) in values { #expect(config.value(of: key) == value, "\(key)") }
    }

    @Test func aBadValueNamesWhereItCameFrom() {
        func problem(_ sources: AgentConfigSources, _ text: String) -> String {
            do { _ = try sources.resolve(fileText: text); return "accepted" } catch { return "\(error)" }
        }
        #expect(problem(AgentConfigSources(environment: ["MT_AGENT_SPACE_POLICY": "drop"]), file)
                == "environment MT_AGENT_SPACE_POLICY: space_policy: \"drop\" is not one of prune-oldest, stop")
        #expect(problem(AgentConfigSources(environment: [:], commandLine: ["port": "0"]), file)
                == "--set: port: \"0\" is not a TCP port (1–65535)")
        #expect(problem(AgentConfigSources(environment: [:], commandLine: ["prot": "1"]), file).hasPrefix("--set: prot: unknown key"))
        #expect(problem(AgentConfigSources(environment: [:]), file + "\nport = 9443")
                == "/etc/mt-agent/mt-agent.conf line 5: port: set twice")
        #expect(problem(AgentConfigSources(environment: [:]), "\n\nretention_window = soon")
                == "/etc/mt-agent/mt-agent.conf line 3: retention_window: \"soon\" is not a duration (e.g. 30s, 15m, 24h, 7d)")
        // A bad file value overridden by a good one elsewhere is still a bad file.
        #expect(problem(AgentConfigSources(environment: ["MT_AGENT_PORT": "9443"]), "port = 0")
                == "/etc/mt-agent/mt-agent.conf line 1: port: \"0\" is not a TCP port (1–65535)")
    }

    @Test func changedKeysSplitIntoReloadableAndRestart() throws {
        let old = try AgentConfig.parse(file)
        let new = try AgentConfig.parse(file.replacingOccurrences(of: "10443", with: "10444") + "\nspace_policy = stop")
        #expect(old.changedKeys(to: new) == ["port", "space_policy"])
        #expect(old.changedKeys(to: new).filter(AgentConfig.reloadableKeys.contains) == ["space_policy"])
        #expect(old.changedKeys(to: old).isEmpty)
    }
}
