import Foundation
import Glibc
import Testing

/// `mt-agent serve`'s Prometheus endpoint, scraped as Prometheus would while the service runs:
/// every figure is checked against what the sender and `mt-agent points` say happened.
@Suite(.serialized, .tags(.large), .enabled(if: geteuid() == 0, "needs root for loop devices and mounts"))
struct MetricsEndToEndTests {
    static let mib = 1 << 20

    @Test func aScrapeShowsWhatWasReceivedAppliedAckedAndRefused() throws {
        let port = try LoopbackListener().freePort()
        let lab = try LabMaster(metricsAddress: "127.0.0.1:\(port)")
        defer { lab.remove() }
        let work = lab.directory.path
        let size = 8 * Self.mib
        var rng = SeededBytes(state: 64)
        let source = work + "/source.img"
        try Data(rng.bytes(size)).write(to: URL(fileURLWithPath: source))
        let target = try lab.target(bytes: UInt64(size))
        try lab.start()
        #expect(lab.log.contains("metrics endpoint listening") && lab.log.contains("address=127.0.0.1:\(port)"), "\(lab.log)")

        // A resync onto a zeroed target (every chunk differs), then writes with tags.
        let resync = try mtAgent(lab.sendArguments("resync", source: source, pair: "p1", target: target) + ["--json"])
        #expect(resync.status == 0, "\(resync.stderr)")
        let resyncStats = try #require(try resync.json["stats"] as? [String: Any])
        #expect(resyncStats["bytesSent"] as? Int == size)
        var lines: [String] = []
        for i in 0..<40 {
            let length = [4096, 8192, 65536, 1000][i % 4]
            lines.append("write \(Int(rng.next() % UInt64(size - length))) \(length) \(rng.next() >> 1)")
            if i % 10 == 9 { lines.append("tag \(i == 39 ? "app" : "crash") t\(i / 10)") }
        }
        try lines.joined(separator: "\n").write(toFile: work + "/t.trace", atomically: true, encoding: .utf8)
        let replay = try mtAgent(lab.sendArguments("replay", source: source, pair: "p1", target: target) + [work + "/t.trace", "--json"])
        #expect(replay.status == 0, "\(replay.stderr)")
        let replayStats = try #require(try replay.json["stats"] as? [String: Any])
        let durableSeq = try #require((try replay.json["durableSeq"] as? [String: Any])?["p1"] as? Int)

        // One sender with the wrong passphrase.
        let wrongPass = work + "/wrong.pass"
        try "not the passphrase\n".write(toFile: wrongPass, atomically: true, encoding: .utf8)
        chmod(wrongPass, 0o600)
        #expect(try mtAgent(lab.sendArguments("resync", source: source, pair: "p1", target: target, passphraseFile: wrongPass)).status == 2)

        let points = try mtAgent(["points", "--group", "g1", "--config", lab.config, "--json"])
        #expect(points.status == 0, "\(points.stderr)")
        let groups = try #require(try JSONSerialization.jsonObject(with: Data(points.stdout.utf8)) as? [[String: Any]])
        let pointCount = try #require(groups.first { $0["group"] as? String == "g1" }?["points"] as? [Any]).count
        #expect(pointCount == 4)

        let scrape = try HTTPExchange(port: port, method: "GET", path: "/metrics")
        #expect(scrape.status == 200)
        #expect(scrape.headers["content-type"]?.hasPrefix("text/plain; version=0.0.4") == true, "\(scrape.headers)")
        let m = Exposition(scrape.body)
        let pair = #"{pair="p1",group="g1"}"#
        let sentBytes = try #require(resyncStats["bytesSent"] as? Int) + (try #require(replayStats["bytesSent"] as? Int))
        let sentWrites = try #require(resyncStats["writes"] as? Int) + (try #require(replayStats["writes"] as? Int))
        #expect(m["mt_agent_received_bytes_total" + pair] == Double(sentBytes), "\(scrape.body)")
        #expect(m["mt_agent_applied_bytes_total" + pair] == Double(sentBytes))
        #expect(m["mt_agent_received_writes_total" + pair] == Double(sentWrites))
        #expect(m["mt_agent_applied_writes_total" + pair] == Double(sentWrites))
        #expect(m["mt_agent_acked_sequence" + pair] == Double(durableSeq))
        #expect(m[#"mt_agent_recovery_points{group="g1"}"#] == Double(pointCount))
        #expect(m["mt_agent_auth_failures_total"] == 1)
        #expect(m[#"mt_agent_errors_total{kind="auth-failed"}"#] == 1)
        #expect(m[#"mt_agent_errors_total{kind="checksum-mismatch"}"#] == 0)
        #expect((m["mt_agent_journal_bytes" + pair] ?? 0) > 0)
        #expect(m["mt_agent_resync_progress_ratio" + pair] == 1)
        let lag = try #require(m[#"mt_agent_rpo_lag_seconds{group="g1"}"#])
        #expect(lag >= 0 && lag < 600)
        #expect((m[#"mt_agent_rpo_violations_total{group="g1"}"#] ?? 0) == 0)

        // Every family served is documented, and every documented one is served.
        let doc = try String(contentsOfFile: packageRoot.appendingPathComponent("docs/metrics.md").path, encoding: .utf8)
        let documented = Set(doc.matches(of: /`(mt_agent_[a-z_]+)`/).map { String($0.output.1) })
        #expect(m.families.subtracting(documented).isEmpty, "not in docs/metrics.md: \(m.families.subtracting(documented))")
        // rpo_violations appears once the RPO monitor (every 10 s) has seen the group.
        let expected = documented.subtracting(["mt_agent_rpo_violations_total"])
        #expect(expected.subtracting(m.families).isEmpty, "documented but not served: \(expected.subtracting(m.families))")

        #expect(try HTTPExchange(port: port, method: "GET", path: "/").status == 404)
        #expect(try HTTPExchange(port: port, method: "GET", path: "/metrics/x").status == 404)
        let post = try HTTPExchange(port: port, method: "POST", path: "/metrics")
        #expect(post.status == 405 && post.headers["allow"] == "GET")
        #expect(lab.stop() == 0)
    }

    /// The endpoint's port held by another program: serve says which setting to change and stops
    /// before it accepts any sender.
    @Test func aTakenMetricsPortStopsServeWithOneErrorLine() throws {
        let holder = try LoopbackListener()
        defer { holder.close() }  // also keeps it open until then
        let lab = try LabMaster(metricsAddress: "127.0.0.1:\(holder.port)")
        defer { lab.remove() }
        let serve = try Background(["serve", "--config", lab.config, "--port", "0"], stderrPath: lab.directory.path + "/serve.err")
        defer { serve.kill9() }
        for _ in 0..<200 where serve.process.isRunning { usleep(100_000) }
        #expect(!serve.process.isRunning, "serve on a taken metrics port was still running after 20 s")
        serve.kill9()
        let r = serve.wait()
        #expect(r.status == 2)
        let errors = r.stderr.split(separator: "\n").filter { $0.hasPrefix("mt-agent: error:") }
        #expect(errors.count == 1 && errors[0].contains("metrics_address 127.0.0.1:\(holder.port)") && errors[0].contains("in use"),
                "\(r.stderr)")
        #expect(!r.stderr.contains(" ready"), "serve said ready before its metrics endpoint was bound: \(r.stderr)")
    }
}

/// A TCP socket listening on a loopback port the kernel chose; closed when released.
final class LoopbackListener {
    private var fd: Int32
    let port: Int

    init() throws {
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_addr.s_addr = inet_addr("127.0.0.1")
        var length = socklen_t(MemoryLayout<sockaddr_in>.size)
        let ok = withUnsafeMutablePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                bind(fd, $0, length) == 0 && listen(fd, 1) == 0 && getsockname(fd, $0, &length) == 0
            }
        }
        guard fd >= 0, ok else {
            if fd >= 0 { Glibc.close(fd) }
            throw LabError("cannot listen on a loopback port: errno \(errno)")
        }
        self.fd = fd
        port = Int(UInt16(bigEndian: address.sin_port))
    }

    /// A port that was free a moment ago (the listener is closed), for a service to bind.
    func freePort() -> Int {
        close()
        return port
    }

    func close() {
        if fd >= 0 { Glibc.close(fd) }
        fd = -1
    }

    deinit { close() }
}

/// One HTTP/1.1 request over a plain socket, `Connection: close`, read to the end.
struct HTTPExchange {
    var status: Int
    /// Lower-cased names.
    var headers: [String: String]
    var body: String

    init(port: Int, method: String, path: String) throws {
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        guard fd >= 0 else { throw LabError("socket: errno \(errno)") }
        defer { close(fd) }
        var timeout = timeval(tv_sec: 10, tv_usec: 0)
        setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &timeout, socklen_t(MemoryLayout<timeval>.size))
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_addr.s_addr = inet_addr("127.0.0.1")
        address.sin_port = UInt16(port).bigEndian
        let connected = withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { connect(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
        }
        guard connected == 0 else { throw LabError("connect to 127.0.0.1:\(port): errno \(errno)") }
        let request = Array("\(method) \(path) HTTP/1.1\r\nHost: 127.0.0.1:\(port)\r\nContent-Length: 0\r\nConnection: close\r\n\r\n".utf8)
        guard write(fd, request, request.count) == request.count else { throw LabError("write: errno \(errno)") }
        var response: [UInt8] = []
        var buffer = [UInt8](repeating: 0, count: 65536)
        while true {
            let n = read(fd, &buffer, buffer.count)
            if n < 0 { throw LabError("read: errno \(errno)") }
            if n == 0 { break }
            response += buffer[0..<n]
        }
        let text = String(decoding: response, as: UTF8.self)
        guard let split = text.range(of: "\r\n\r\n") else { throw LabError("no HTTP header in: \(text)") }
        let head = text[..<split.lowerBound].components(separatedBy: "\r\n")
        guard let statusLine = head.first, statusLine.hasPrefix("HTTP/1.1 "),
              let code = Int(statusLine.dropFirst(9).prefix(3)) else { throw LabError("bad status line in: \(text)") }
        status = code
        var headers: [String: String] = [:]
        for line in head.dropFirst() {
            guard let colon = line.firstIndex(of: ":") else { continue }
            headers[line[..<colon].lowercased()] = line[line.index(after: colon)...].trimmingCharacters(in: .whitespaces)
        }
        self.headers = headers
        body = String(text[split.upperBound...])
    }
}

/// The Prometheus text format, read back: samples by `name{labels}` and the families typed.
struct Exposition {
    var samples: [String: Double] = [:]
    var families: Set<String> = []

    init(_ text: String) {
        for line in text.split(separator: "\n") {
            if line.hasPrefix("# TYPE ") {
                families.insert(String(line.dropFirst(7).prefix { $0 != " " }))
            } else if !line.hasPrefix("#"), let space = line.lastIndex(of: " ") {
                samples[String(line[..<space])] = Double(line[line.index(after: space)...])
            }
        }
    }

    subscript(key: String) -> Double? { samples[key] }
}

/// `lab init` leaves the endpoint off unless asked: tests, benchmarks and the demo run several
/// services on one machine, and they must not all bind 127.0.0.1:9464.
@Suite struct LabInitMetricsTests {
    @Test func theEndpointIsOffUnlessAnAddressIsGiven() throws {
        let work = try temporaryDirectory()
        defer { try? FileManager.default.removeItem(at: work) }
        let pass = work.appendingPathComponent("pass").path
        try "lab passphrase\n".write(toFile: pass, atomically: true, encoding: .utf8)
        chmod(pass, 0o600)
        func initLab(_ name: String, _ extra: [String]) throws -> (Run, String) {
            let dir = work.appendingPathComponent(name).path
            let r = try mtAgent(["lab", "init", dir, "--passphrase-file", pass, "--retention", "/mnt/lab", "--fast-kdf"] + extra)
            return (r, (try? String(contentsOfFile: dir + "/mt-agent.conf", encoding: .utf8)) ?? "")
        }
        let (plain, plainConfig) = try initLab("plain", [])
        #expect(plain.status == 0, "\(plain.stderr)")
        #expect(plainConfig.contains("\nmetrics_address = off\n"), "\(plainConfig)")
        let (asked, askedConfig) = try initLab("asked", ["--metrics-address", "[::1]:9470"])
        #expect(asked.status == 0, "\(asked.stderr)")
        #expect(askedConfig.contains("\nmetrics_address = [::1]:9470\n"), "\(askedConfig)")
        let (bad, _) = try initLab("bad", ["--metrics-address", "localhost"])
        #expect(bad.status != 0 && bad.stderr.contains("--metrics-address localhost is not HOST:PORT"), "\(bad.stderr)")
        #expect(!FileManager.default.fileExists(atPath: work.appendingPathComponent("bad").path))
    }
}
