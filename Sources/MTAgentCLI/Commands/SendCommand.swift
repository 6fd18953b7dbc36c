import ArgumentParser
import Glibc
import Logging
import MTAgentCore
import MTAgentLinux
import MTAgentReplication
import MTAgentSetup
import NIOCore
import NIOPosix

/// `mt-agent send`: the reference sender, in the process server's role.
struct SendCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "send",
        abstract: "Replicate a local device or file to a master target (the process server's role).",
        discussion: """
            Modes:
              resync   one differential copy: only chunks whose hashes differ are sent (--full: all)
              follow   resync, then every --interval send what changed and tag the group
              replay   apply a trace (docs/sender.md) to the source and send it, for tests and benchmarks

            Examples:
              mt-agent send resync --source /dev/sdb --to mt01:9443 --fingerprint 3a:5f:… \\
                  --passphrase-file /root/repl.pass --pair web01-disk0 --group web01 --target 36000c29…
              mt-agent send follow --source /dev/sdb … --interval 10s --app-tag nightly --freeze /srv/data
              mt-agent send replay writes.trace --source /var/tmp/src.img … --json
            """)

    enum Mode: String, ExpressibleByArgument, CaseIterable { case resync, follow, replay }

    @Argument(help: "resync, follow or replay.") var mode: Mode
    @Argument(help: "The trace file (replay only).") var trace: String?

    @Option(help: ArgumentHelp("The source block device or file; repeat with --pair and --target for each pair of the group.", valueName: "path")) var source: [String]
    @Option(help: ArgumentHelp("The master target.", valueName: "host:port")) var to: String
    @Option(help: "SHA-256 fingerprint of the master target's certificate, as 'mt-agent setup' printed it.") var fingerprint: String
    @Option(name: .customLong("passphrase-file"), help: ArgumentHelp("File holding the replication passphrase (mode 0600).", valueName: "path"))
    var passphraseFile: String
    @Option(help: "Pair id (stable: the MT keeps state under it); one per --source, in the same order.") var pair: [String]
    @Option(help: "Consistency group.") var group: String
    @Option(help: "Target on the MT as assigned there: WWID or path; one per --source, in the same order.") var target: [String]

    @Flag(help: "resync: copy every chunk without comparing hashes.") var full = false
    @Option(help: "follow: seconds between cycles.") var interval: Double = 5
    @Option(help: "follow: stop after this many cycles (default: run until stopped).") var cycles: Int?
    @Option(name: .customLong("app-tag"), help: "follow: make tags app-consistent with this name.") var appTag: String?
    @Option(name: .customLong("app-every"), help: "follow: every how many cycles the tag is app-consistent.") var appEvery: Int = 1
    @Option(help: ArgumentHelp("follow: fsfreeze this mount point around app-consistent tags (repeatable).", valueName: "mountpoint")) var freeze: [String] = []
    @Option(name: .customLong("tag-interval"), help: "replay: also insert a crash tag every this many seconds.") var tagInterval: Double?
    @Option(name: .customLong("chunk-size"), help: "Resync and change-tracking granularity in bytes (power of two, 4096…4194304).") var chunkSize: Int = 4096
    @Flag(help: "Print a JSON summary at the end.") var json = false
    @Option(name: .customLong("log-level"), help: "How much to log to stderr.") var logLevel: Logger.Level = .warning
    @Option(name: .customLong("state-dir"), help: ArgumentHelp("Where the sender keeps what a later run with the same --pair needs (docs/sender.md).", valueName: "path"))
    var stateDir = "/var/lib/mt-agent/send"

    /// `--to` as host and port; nil when it is not HOST:PORT with a port from 1 to 65535.
    static func endpoint(_ to: String) -> (host: String, port: Int)? {
        guard let colon = to.lastIndex(of: ":"), let port = Int(to[to.index(after: colon)...]), (1...65535).contains(port) else { return nil }
        var host = String(to[..<colon])
        if host.hasPrefix("["), host.hasSuffix("]") { host = String(host.dropFirst().dropLast()) }
        guard !host.isEmpty else { return nil }
        return (host, port)
    }

    /// The sender's key from the MT's salt and scrypt parameters. The session checked them against
    /// ScryptBounds already; this refuses again rather than trap if it is ever called otherwise.
    static func deriveKey(passphrase: [UInt8], salt: [UInt8], n: UInt64, r: UInt32, p: UInt32) throws -> [UInt8] {
        if let problem = ScryptBounds.problem(n: n, r: UInt64(r), p: UInt64(p)) {
            throw SenderError.source("the master target's scrypt parameters are out of bounds: \(problem)")
        }
        guard let n = Int(exactly: n), let r = Int(exactly: r), let p = Int(exactly: p) else {
            throw SenderError.source("the master target's scrypt parameters do not fit this machine")
        }
        return try PassphraseKey.derive(passphrase: passphrase, salt: salt, params: KDFParameters(n: n, r: r, p: p)).keyBytes
    }

    func validate() throws {
        try requireIdentifier(group, .group, flag: "--group")
        for id in pair { try requireIdentifier(id, .pair, flag: "--pair") }
        if mode == .replay && trace == nil { throw ValidationError("replay needs a trace file: mt-agent send replay TRACE …") }
        if mode != .replay && trace != nil { throw ValidationError("only replay takes a trace file") }
        guard chunkSize >= 4096, chunkSize <= 4 << 20, chunkSize & (chunkSize - 1) == 0 else {
            throw ValidationError("--chunk-size must be a power of two from 4096 to 4194304")
        }
        guard TLSIdentity.normalizeFingerprint(fingerprint) != nil else {
            throw ValidationError("--fingerprint must be 32 hex bytes (colons optional), as 'mt-agent setup' prints it")
        }
        guard Self.endpoint(to) != nil else {
            throw ValidationError("--to must be HOST:PORT with a port from 1 to 65535, e.g. mt01:9443")
        }
        if !freeze.isEmpty && appTag == nil { throw ValidationError("--freeze needs --app-tag") }
        guard !source.isEmpty, source.count == pair.count, pair.count == target.count else {
            throw ValidationError("give one --pair and one --target for each --source (got \(source.count) sources, \(pair.count) pairs, \(target.count) targets)")
        }
        guard Set(pair).count == pair.count else { throw ValidationError("each --pair must be different") }
        if mode == .replay && source.count > 1 { throw ValidationError("replay drives one pair: give one --source") }
        if tagInterval != nil && mode != .replay { throw ValidationError("--tag-interval is for replay") }
        if let tagInterval, !(tagInterval > 0) { throw ValidationError("--tag-interval must be more than 0 seconds") }
    }

    func run() async throws {
        var logger = Logger(label: "mt-agent.send", factory: LogOutput.handler)
        logger.logLevel = logLevel
        let passphrase: [UInt8]
        let devices: [SourceDevice]
        let parsedTrace: Trace?
        guard let endpoint = Self.endpoint(to), let pinned = TLSIdentity.normalizeFingerprint(fingerprint)?.replacingColons() else {
            throw fail("--to or --fingerprint is malformed")  // validate() refused these already
        }
        let markers: [SenderRunMarker]
        do {
            passphrase = try PassphraseKey.readPassphraseFile(passphraseFile)
            devices = try source.map { try SourceDevice(path: $0, writable: mode == .replay) }
            parsedTrace = try trace.map { path in
                guard let bytes = RootedFiles(root: "/").read(path) else { throw SenderError.source("cannot read trace \(path)") }
                return try Trace.parse(String(decoding: bytes, as: UTF8.self), file: path)
            }
            // Before anything can change: from here a kill leaves each pair marked for a resync.
            markers = try pair.indices.map { i in
                try SenderRunMarker(directory: stateDir, fingerprint: pinned, pairID: pair[i],
                                    describing: "mode = \(mode.rawValue)\nmaster = \(to)\ngroup = \(group)\ntarget = \(target[i])\nsource = \(source[i])")
            }
        } catch {
            throw fail("\(error)")
        }
        let config = SenderConfiguration(
            host: endpoint.host, port: endpoint.port, fingerprint: pinned,
            senderName: HostIdentity.hostname(RootedFiles(root: "/"))) { salt, n, r, p in
                try Self.deriveKey(passphrase: passphrase, salt: salt, n: n, r: r, p: p)
            }
        let specs = devices.indices.map { PairSpec(pairID: pair[$0], group: group, target: target[$0], sourceSize: devices[$0].size) }
        let session = SenderSession(configuration: config, pairs: specs, logger: logger)
        for (i, marker) in markers.enumerated() where marker.wasDirty {
            logger.warning("the last run for this pair did not end with everything acknowledged: resyncing it first",
                           metadata: ["pair.id": "\(marker.pairID)", "state.dir": "\(stateDir)"])
            await session.requireResync(UInt32(i + 1))
        }
        var sources: [UInt32: SourceDevice] = [:]
        for (i, device) in devices.enumerated() { sources[UInt32(i + 1)] = device }
        let pool = NIOThreadPool(numberOfThreads: 2)
        pool.start()
        var options = Replicator.Options()
        options.chunkSize = chunkSize
        options.full = full
        let meter = ProgressMeter(enabled: isatty(STDERR_FILENO) == 1 && !json)
        let replicator = Replicator(session: session, sources: sources, pool: pool, options: options, logger: logger,
                                    progress: { meter.show($0) }, freezer: Self.fsfreeze)
        let clock = ContinuousClock()
        let started = clock.now
        do {
            try await session.connect(retryFor: .seconds(60))
            switch mode {
            case .resync:
                try await replicator.resync()
            case .follow:
                var f = Replicator.FollowOptions()
                f.interval = .milliseconds(Int64(interval * 1000))
                f.cycles = cycles
                f.appTag = appTag
                f.appEvery = appEvery
                f.freeze = freeze
                try await replicator.follow(f)
            case .replay:
                try await replicator.replay(parsedTrace!, tagInterval: tagInterval.map { .milliseconds(Int64($0 * 1000)) })
            }
        } catch {
            meter.finish()
            await session.close()
            try? await pool.shutdownGracefully()
            throw fail("\(error)")
        }
        try? await pool.shutdownGracefully()
        meter.finish()
        do {
            for marker in markers { try marker.markClean() }
        } catch {
            await session.close()
            throw fail("everything was acknowledged, but \(error); the next run will resync")
        }
        let elapsed = clock.now - started
        let stats = await session.stats
        var durable: [String: UInt64] = [:]
        for (i, id) in pair.enumerated() { durable[id] = await session.durableSeq(UInt32(i + 1)) }
        await session.close()
        let seconds = Double(elapsed.components.seconds) + Double(elapsed.components.attoseconds) / 1e18
        if json {
            print(try JSONOutput.encode(SendSummary(mode: mode.rawValue, pairs: pair, group: group,
                                                    sourceBytes: devices.reduce(0) { $0 + $1.size },
                                                    durableSeq: durable, seconds: seconds, stats: stats)))
        } else {
            let mib = Double(stats.bytesSent) / 1_048_576
            print("\(mode.rawValue): \(pair.joined(separator: ", ")) → \(to): \(String(format2: mib)) MiB in \(stats.writes) writes, \(stats.tags) tags, "
                  + "\(String(format2: seconds)) s (\(String(format2: mib / max(seconds, 0.001))) MiB/s), \(stats.reconnects) reconnects, all acknowledged")
        }
    }
}

extension SendCommand {
    /// `fsfreeze -f|-u MOUNTPOINT` around an app-consistent tag.
    static let fsfreeze: @Sendable (String, Bool) throws -> Void = { mountpoint, freeze in
        let flag = freeze ? "-f" : "-u"
        let r = try ProcessRunner().run(["fsfreeze", flag, mountpoint])
        guard r.status == 0 else { throw SenderError.source("fsfreeze \(flag) \(mountpoint) failed: \(r.stderr)") }
    }
}

struct SendSummary: Codable {
    var mode: String
    var pairs: [String]
    var group: String
    /// All sources together.
    var sourceBytes: UInt64
    /// Per pair.
    var durableSeq: [String: UInt64]
    var seconds: Double
    var stats: SenderStats
}

/// One progress line on a terminal, rewritten in place at most 4 times a second.
final class ProgressMeter: @unchecked Sendable {
    let enabled: Bool
    private var last = ContinuousClock.now - .seconds(1)
    private let lock = Lock()
    init(enabled: Bool) { self.enabled = enabled }

    func show(_ p: Replicator.Progress) {
        guard enabled else { return }
        lock.withLock {
            let now = ContinuousClock.now
            guard now - last >= .milliseconds(250) else { return }
            last = now
            let pct = p.total > 0 ? " \(p.done * 100 / p.total)%" : ""
            let line = "\r\(p.phase)\(pct): \(p.stats.bytesSent / 1_048_576) MiB sent, \(p.stats.writes) writes, \(p.stats.tags) tags, \(p.stats.reconnects) reconnects   "
            _ = line.withCString { write(STDERR_FILENO, $0, strlen($0)) }
        }
    }

    func finish() {
        guard enabled else { return }
        _ = "\n".withCString { write(STDERR_FILENO, $0, 1) }
    }
}

extension String {
    init(format2 value: Double) {
        let scaled = (value * 100).rounded()
        let whole = Int(scaled / 100)
        let frac = Int(abs(scaled).truncatingRemainder(dividingBy: 100))
        self = "\(whole).\(frac < 10 ? "0" : "")\(frac)"
    }

    func replacingColons() -> String { filter { $0 != ":" }.lowercased() }
}
