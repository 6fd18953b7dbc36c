import Foundation
import Glibc
import Logging
import Metrics
import MTAgentCore
import Prometheus
import ServiceLifecycle
import Testing
@testable import MTAgentService

/// The metrics endpoint over a socket, and the status gauges, each with a registry of its own
/// (nothing is bootstrapped: other tests in this process must not see these metrics).
@Suite struct MetricsEndpointTests {
    @Test func oneKeptAliveConnectionGetsTheExpositionA404AndA405AndShutdownStillEndsIt() async throws {
        let registry = PrometheusCollectorRegistry()
        let factory = PrometheusMetricsFactory(registry: registry)
        let applied = AppliedMetrics(pairID: "p1", group: "g1", factory: factory)
        applied.bytes.increment(by: 4096)
        applied.writes.increment()
        let endpoint = try await MetricsEndpoint.bind(host: "127.0.0.1", port: 0, exposition: { registry.emitToBuffer() },
                                                      logger: Logger(label: "test"))
        let port = try #require(Int(endpoint.address.split(separator: ":").last ?? ""))
        #expect(port > 0 && endpoint.address.hasPrefix("127.0.0.1:"))
        let group = ServiceGroup(configuration: .init(services: [endpoint], logger: Logger(label: "test")))
        let running = Task { try await group.run() }

        let client = try await offThePool { try KeepAliveClient(port: port) }
        defer { client.close() }
        let scrape = try await offThePool { try client.request("GET", "/metrics") }
        #expect(scrape.status == 200)
        #expect(scrape.headers.contains("Content-Type: text/plain; version=0.0.4"))
        #expect(scrape.body.contains(#"mt_agent_applied_bytes_total{pair="p1",group="g1"} 4096"#), "\(scrape.body)")
        #expect(scrape.body.contains("# TYPE mt_agent_applied_writes_total counter"))
        #expect(try await offThePool { try client.request("GET", "/other") }.status == 404)
        let delete = try await offThePool { try client.request("DELETE", "/metrics") }
        #expect(delete.status == 405 && delete.headers.contains("Allow: GET"))
        // A query string is still the metrics.
        #expect(try await offThePool { try client.request("GET", "/metrics?name[]=x") }.status == 200)

        // The scraper's connection is still open: graceful shutdown must end it, not wait for it.
        let started = ContinuousClock.now
        await group.triggerGracefulShutdown()
        try await running.value
        #expect(ContinuousClock.now - started < .seconds(5))
        #expect(try await offThePool { try client.readToEnd() }.isEmpty)
    }

    @Test func statusGaugesFollowTheStatusAndDropWhatIsGone() throws {
        let registry = PrometheusCollectorRegistry()
        let gauges = StatusGauges(factory: PrometheusMetricsFactory(registry: registry))
        func pair(_ id: String, _ state: PairState, offset: UInt64) -> ServiceStatus.Pair {
            ServiceStatus.Pair(pair: id, target: "t-\(id)", state: state.rawValue, connected: true, durableSeq: 9, resyncOffset: offset,
                               targetBytes: 1 << 20, journalBytes: 12345)
        }
        var status = ServiceStatus(
            version: "test", pid: 1, uptimeSeconds: 1, listening: "127.0.0.1:9443", retention: "/r", retentionFreeBytes: 0,
            retentionReserveBytes: 0,
            settings: .init(rpoThresholdSeconds: 900, retentionWindowSeconds: 86400, appConsistentFrequencySeconds: 3600,
                            spacePolicy: "prune-oldest", logLevel: "info", restartNeeded: []),
            groups: [ServiceStatus.Group(group: "g1", pairs: [pair("a", .resyncing, offset: 1 << 18), pair("b", .inSync, offset: 1 << 20),
                                                              pair("c", .resyncRequired, offset: 1 << 19)],
                                         points: 3, rpoLagSeconds: 4.5, rpoThresholdSeconds: 900)],
            problems: [])
        gauges.update(from: status)
        let first = registry.emitToString()
        for line in [#"mt_agent_resync_progress_ratio{pair="a",group="g1"} 0.25"#,
                     #"mt_agent_resync_progress_ratio{pair="b",group="g1"} 1.0"#,
                     #"mt_agent_resync_progress_ratio{pair="c",group="g1"} 0.0"#,
                     #"mt_agent_journal_bytes{pair="a",group="g1"} 12345.0"#,
                     #"mt_agent_recovery_points{group="g1"} 3.0"#,
                     #"mt_agent_rpo_lag_seconds{group="g1"} 4.5"#] {
            #expect(first.contains(line), "\(line) not in:\n\(first)")
        }
        // Pair a committed away, no point yet for the group's lag: those series go.
        status.groups[0].pairs.removeFirst()
        status.groups[0].rpoLagSeconds = nil
        gauges.update(from: status)
        let second = registry.emitToString()
        #expect(!second.contains(#"pair="a""#) && !second.contains("mt_agent_rpo_lag_seconds{"), "\(second)")
        #expect(second.contains(#"mt_agent_journal_bytes{pair="b",group="g1"} 12345.0"#))
    }
}

/// Runs blocking socket calls on a thread of their own, never on the concurrency pool the
/// endpoint's scrapes run on.
func offThePool<T: Sendable>(_ work: @escaping @Sendable () throws -> T) async throws -> T {
    try await withCheckedThrowingContinuation { c in
        Thread { c.resume(with: Result { try work() }) }.start()
    }
}

/// One HTTP/1.1 connection kept alive across requests; responses read by their Content-Length.
final class KeepAliveClient: @unchecked Sendable {
    let fd: Int32
    private var pending: [UInt8] = []

    init(port: Int) throws {
        fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        var timeout = timeval(tv_sec: 10, tv_usec: 0)
        setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &timeout, socklen_t(MemoryLayout<timeval>.size))
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_addr.s_addr = inet_addr("127.0.0.1")
        address.sin_port = UInt16(port).bigEndian
        let connected = withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { connect(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
        }
        guard fd >= 0, connected == 0 else { throw ClientError("connect to 127.0.0.1:\(port): errno \(errno)") }
    }

    struct ClientError: Error, CustomStringConvertible {
        var description: String
        init(_ d: String) { description = d }
    }

    func request(_ method: String, _ path: String) throws -> (status: Int, headers: String, body: String) {
        let bytes = Array("\(method) \(path) HTTP/1.1\r\nHost: localhost\r\n\r\n".utf8)
        guard write(fd, bytes, bytes.count) == bytes.count else { throw ClientError("write: errno \(errno)") }
        while true {
            if let end = pending.firstRange(of: Array("\r\n\r\n".utf8)) {
                let head = String(decoding: pending[..<end.lowerBound], as: UTF8.self)
                let length = head.components(separatedBy: "\r\n").first { $0.lowercased().hasPrefix("content-length:") }
                    .flatMap { Int($0.dropFirst(15).trimmingCharacters(in: .whitespaces)) } ?? 0
                if pending.count >= end.upperBound + length {
                    let body = String(decoding: pending[end.upperBound..<(end.upperBound + length)], as: UTF8.self)
                    pending.removeFirst(end.upperBound + length)
                    return (Int(head.dropFirst(9).prefix(3)) ?? 0, head, body)
                }
            }
            guard try fill() > 0 else { throw ClientError("connection closed before a whole response") }
        }
    }

    /// What arrives until the server closes the connection.
    func readToEnd() throws -> [UInt8] {
        while try fill() > 0 {}
        defer { pending = [] }
        return pending
    }

    private func fill() throws -> Int {
        var buffer = [UInt8](repeating: 0, count: 65536)
        let n = read(fd, &buffer, buffer.count)
        guard n >= 0 else { throw ClientError("read: errno \(errno)") }
        pending += buffer[0..<n]
        return n
    }

    func close() { Glibc.close(fd) }
}
