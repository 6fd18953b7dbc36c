import Crypto
import Foundation
import Glibc
import Testing

/// A master target for one test, as a user would set one up in a lab: an ext4 retention volume
/// on a loop device, `mt-agent lab init`, loop-device targets assigned with `targets assign`,
/// and `mt-agent serve` as a child process that the test can SIGTERM or kill -9 and restart.
/// `remove()` stops the server and undoes everything, whatever state a failed test left.
final class LabMaster {
    let retention: LoopVolume
    let directory: URL
    let config: String
    let passphraseFile: String
    let fingerprint: String
    let serveLog: String
    private(set) var port = 0
    private var server: Process?
    private var targets: [(device: String, image: String)] = []

    /// `metricsAddress`: where serve's Prometheus endpoint listens; off (lab init's default) without it.
    init(retentionMiB: Int = 2048, metricsAddress: String? = nil) throws {
        retention = try LoopVolume(sizeMiB: retentionMiB)
        directory = try temporaryDirectory()
        passphraseFile = directory.appendingPathComponent("pass").path
        try "correct horse battery staple\n".write(toFile: passphraseFile, atomically: true, encoding: .utf8)
        chmod(passphraseFile, 0o600)
        config = directory.appendingPathComponent("mt/mt-agent.conf").path
        serveLog = directory.appendingPathComponent("serve.log").path
        let r = try mtAgent(["lab", "init", directory.appendingPathComponent("mt").path, "--passphrase-file", passphraseFile,
                             "--retention", retention.mountPoint, "--port", "9443", "--fast-kdf"]
                            + (metricsAddress.map { ["--metrics-address", $0] } ?? []))
        guard r.status == 0 else {
            // No remove() will be called for a lab that was never made: undo the volume here.
            retention.remove()
            try? FileManager.default.removeItem(at: directory)
            throw LabError("lab init failed: \(r.stderr)")
        }
        fingerprint = r.stdout.trimmingCharacters(in: .whitespacesAndNewlines)
    }

    /// A loop device over a sparse file of `bytes`, assigned to `group` unless told otherwise.
    func target(bytes: UInt64, group: String? = "g1") throws -> String {
        let image = directory.appendingPathComponent("target-\(targets.count).img").path
        try LoopVolume.run("truncate", "-s", "\(bytes)", image)
        let device = try LoopVolume.run("losetup", "--find", "--show", image).trimmingCharacters(in: .whitespacesAndNewlines)
        targets.append((device, image))
        if let group {
            let r = try mtAgent(["targets", "assign", device, "--group", group, "--config", config])
            guard r.status == 0 else { throw LabError("targets assign failed: \(r.stderr)") }
        }
        return device
    }

    /// Starts `mt-agent serve` and waits for its `ready` line (the first start picks a free port
    /// with `--port 0`; restarts reuse it, as senders expect).
    /// `logLevel` nil leaves it to the config file.
    func start(environment: [String: String] = [:], arguments: [String] = [], logLevel: String? = "info") throws {
        let p = Process()
        p.executableURL = URL(fileURLWithPath: binary)
        p.arguments = ["serve", "--config", config, "--port", "\(port)"] + (logLevel.map { ["--log-level", $0] } ?? []) + arguments
        var env = ProcessInfo.processInfo.environment
        for (k, v) in environment { env[k] = v }
        p.environment = env
        if !FileManager.default.fileExists(atPath: serveLog) { FileManager.default.createFile(atPath: serveLog, contents: nil) }
        let log = try FileHandle(forWritingTo: URL(fileURLWithPath: serveLog))
        log.seekToEndOfFile()
        let mark = log.offsetInFile
        p.standardError = log
        p.standardOutput = FileHandle.nullDevice
        try p.run()
        server = p
        let deadline = Date().addingTimeInterval(30)
        while Date() < deadline {
            let text = (try? String(contentsOfFile: serveLog, encoding: .utf8)) ?? ""
            let fresh = String(text.utf8.dropFirst(Int(mark))) ?? ""
            if let line = fresh.split(separator: "\n").first(where: { $0.hasSuffix(" ready") && $0.contains("port=") }),
               let range = line.range(of: "port=") {
                port = Int(line[range.upperBound...].prefix { $0.isNumber }) ?? port
                return
            }
            if !p.isRunning { throw LabError("serve exited with \(p.terminationStatus): \(fresh)") }
            usleep(50_000)
        }
        throw LabError("serve did not log 'ready' within 30 s")
    }

    var serverPID: Int32? { server?.isRunning == true ? server?.processIdentifier : nil }

    /// kill -9: no chance to flush anything.
    func kill9() {
        guard let p = server, p.isRunning else { return }
        kill(p.processIdentifier, SIGKILL)
        p.waitUntilExit()
        server = nil
    }

    /// SIGTERM and wait; returns the exit status.
    @discardableResult
    func stop() -> Int32 {
        guard let p = server else { return 0 }
        if p.isRunning { kill(p.processIdentifier, SIGTERM) }
        p.waitUntilExit()
        server = nil
        return p.terminationStatus
    }

    var log: String { (try? String(contentsOfFile: serveLog, encoding: .utf8)) ?? "" }

    /// `mt-agent send MODE …` against this MT.
    func sendArguments(_ mode: String, source: String, pair: String, group: String = "g1", target: String,
                       fingerprint: String? = nil, passphraseFile: String? = nil) -> [String] {
        ["send", mode, "--source", source, "--to", "127.0.0.1:\(port)", "--fingerprint", fingerprint ?? self.fingerprint,
         "--passphrase-file", passphraseFile ?? self.passphraseFile, "--pair", pair, "--group", group, "--target", target,
         "--state-dir", senderState]
    }

    /// The senders' `--state-dir`, inside the lab (never the machine's /var/lib).
    var senderState: String { directory.appendingPathComponent("sender-state").path }

    var journalRoot: String { retention.mountPoint + "/mt-agent/journal" }
    var catalogPath: String { retention.mountPoint + "/mt-agent/catalog.sqlite" }

    func remove() {
        if let p = server, p.isRunning { kill(p.processIdentifier, SIGKILL); p.waitUntilExit() }
        for t in targets { _ = try? LoopVolume.run("losetup", "-d", t.device) }
        retention.remove()
        try? FileManager.default.removeItem(at: directory)
    }
}

struct LabError: Error, CustomStringConvertible {
    var description: String
    init(_ d: String) { description = d }
}

/// SHA-256 of a file or device, hex.
func sha256(_ path: String) throws -> String {
    let h = try FileHandle(forReadingFrom: URL(fileURLWithPath: path))
    defer { try? h.close() }
    var hasher = SHA256()
    while true {
        let data = h.readData(ofLength: 4 << 20)
        if data.isEmpty { break }
        hasher.update(data: data)
    }
    return hasher.finalize().map { String(format: "%02x", $0) }.joined()
}

func sha256(_ bytes: [UInt8]) -> String {
    SHA256.hash(data: bytes).map { String(format: "%02x", $0) }.joined()
}

/// Random bytes from a seeded generator, so a failing run can be repeated.
struct SeededBytes: RandomNumberGenerator {
    var state: UInt64
    mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }

    mutating func bytes(_ count: Int) -> [UInt8] {
        var out = [UInt8](repeating: 0, count: count)
        out.withUnsafeMutableBytes { raw in
            var i = 0
            while i + 8 <= count { raw.storeBytes(of: next(), toByteOffset: i, as: UInt64.self); i += 8 }
            while i < count { raw[i] = UInt8(truncatingIfNeeded: next()); i += 1 }
        }
        return out
    }
}

/// A child process running `mt-agent` in the background (a sender during a kill test).
final class Background {
    let process = Process()
    let stdout = Pipe()
    let stderrPath: String

    init(_ arguments: [String], stderrPath: String, environment: [String: String] = [:]) throws {
        self.stderrPath = stderrPath
        FileManager.default.createFile(atPath: stderrPath, contents: nil)
        process.executableURL = URL(fileURLWithPath: binary)
        process.arguments = arguments
        if !environment.isEmpty {
            process.environment = ProcessInfo.processInfo.environment.merging(environment) { $1 }
        }
        process.standardOutput = stdout
        process.standardError = try FileHandle(forWritingTo: URL(fileURLWithPath: stderrPath))
        try process.run()
    }

    /// Waits for the exit and returns status and stdout.
    func wait() -> (status: Int32, stdout: String, stderr: String) {
        let data = stdout.fileHandleForReading.readDataToEndOfFile()
        process.waitUntilExit()
        return (process.terminationStatus, String(decoding: data, as: UTF8.self),
                (try? String(contentsOfFile: stderrPath, encoding: .utf8)) ?? "")
    }

    func kill9() {
        if process.isRunning { kill(process.processIdentifier, SIGKILL); process.waitUntilExit() }
    }
}
