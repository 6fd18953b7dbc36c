import Metrics

/// The listener's metrics (docs/metrics.md), created once with fixed labels so that counting on
/// the data path is an atomic add, never a lookup by name. They go to whatever backend the
/// executable bootstrapped (`serve`: Prometheus); without one they cost nothing.
public struct ServerMetrics: Sendable {
    let factory: any MetricsFactory
    /// Passphrase proofs that did not verify.
    let authFailures: Counter
    /// Every ERROR and PAIR_ERROR the master target sends, by code; created up front so each
    /// series exists (at 0) before its first error.
    private let errors: [ErrorCode: Counter]

    /// Codes that are routine, not errors: a stop of the service, a pair opened again by a new
    /// connection of its sender.
    static let routine: Set<ErrorCode> = [.shuttingDown, .pairTakenOver]

    public init(factory: any MetricsFactory = MetricsSystem.factory) {
        self.factory = factory
        authFailures = Counter(label: "mt_agent_auth_failures_total", factory: factory)
        var errors: [ErrorCode: Counter] = [:]
        for (code, _, _) in ErrorCode.table where !Self.routine.contains(code) {
            errors[code] = Self.errorCounter(kind: code.description, factory: factory)
        }
        self.errors = errors
    }

    /// `mt_agent_errors_total{kind}`; the service counts its own failures (kinds that are not wire
    /// codes) in the same family.
    public static func errorCounter(kind: String, factory: any MetricsFactory = MetricsSystem.factory) -> Counter {
        Counter(label: "mt_agent_errors_total", dimensions: [("kind", kind)], factory: factory)
    }

    /// Counts `frame` when it is an ERROR or PAIR_ERROR that is not routine.
    func count(_ frame: Frame) {
        switch frame {
        case .error(let code, _), .pairError(_, let code, _):
            errors[code]?.increment()
        default:
            break
        }
    }

    /// A read timeout is answered in the channel pipeline, not through a connection's `send`.
    func countTimeout() { errors[.timeout]?.increment() }

    func pair(_ pairID: String, group: String) -> PairMetrics {
        PairMetrics(pairID: pairID, group: group, factory: factory)
    }
}

/// One pair's metrics on the listener's side, held by its driver for the pair's life.
struct PairMetrics: Sendable {
    /// WRITE frames (and their data bytes) handed to the pair, duplicates after a reconnect included.
    let receivedBytes: Counter
    let receivedWrites: Counter
    /// The sequence number last acknowledged to the sender (ACK, or PAIR_STATE at open).
    let ackedSequence: Gauge

    init(pairID: String, group: String, factory: any MetricsFactory) {
        let labels = [("pair", pairID), ("group", group)]
        receivedBytes = Counter(label: "mt_agent_received_bytes_total", dimensions: labels, factory: factory)
        receivedWrites = Counter(label: "mt_agent_received_writes_total", dimensions: labels, factory: factory)
        ackedSequence = Gauge(label: "mt_agent_acked_sequence", dimensions: labels, factory: factory)
    }

    func received(bytes: Int) {
        receivedWrites.increment()
        receivedBytes.increment(by: bytes)
    }

    func acked(_ seq: UInt64) { ackedSequence.record(Int64(clamping: seq)) }
}
