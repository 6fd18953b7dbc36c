import Metrics

/// The listener's metrics (docs/metrics.md), created once with fixed labels so that counting on
/// the data path is an atomic add, never a lookup by name. They go to whatever backend the
/// executable bootstrapped (`serve`: Prometheus); without one they cost nothing.
public struct ServerMetrics: Sendable {
    let factory: any MetricsFactory
    /// Passphrase proofs that did not verify.
    let authFailures: Counter
    /// Passphrase proofs checked, right or wrong (at most `auth_checks_per_second`).
    let authChecks: Counter
    /// Proofs that waited for the service-wide budget of checks per second.
    let authBudgetWaits: Counter
    /// Connections open now, by whether WELCOME was sent.
    let unauthenticatedConnections: Gauge
    let authenticatedConnections: Gauge
    /// Connections closed at accept because a cap was reached.
    private let refusedMaxConnections: Counter
    private let refusedMaxUnauthenticated: Counter
    /// Connections closed because WELCOME was not reached within `handshake_timeout`.
    let handshakeTimeouts: Counter
    /// WRITE data received and not yet applied, across connections, and how often a connection
    /// had to wait for `max_pending_bytes`.
    let pendingBytes: Gauge
    let pendingBudgetWaits: Counter
    /// Every ERROR and PAIR_ERROR the master target sends, by code; created up front so each
    /// series exists (at 0) before its first error.
    private let errors: [ErrorCode: Counter]

    /// Codes that are routine, not errors: a stop of the service, a pair opened again by a new
    /// connection of its sender.
    static let routine: Set<ErrorCode> = [.shuttingDown, .pairTakenOver]

    public init(factory: any MetricsFactory = MetricsSystem.factory) {
        self.factory = factory
        authFailures = Counter(label: "mt_agent_auth_failures_total", factory: factory)
        authChecks = Counter(label: "mt_agent_auth_checks_total", factory: factory)
        authBudgetWaits = Counter(label: "mt_agent_auth_budget_waits_total", factory: factory)
        unauthenticatedConnections = Gauge(label: "mt_agent_connections", dimensions: [("state", "unauthenticated")], factory: factory)
        authenticatedConnections = Gauge(label: "mt_agent_connections", dimensions: [("state", "authenticated")], factory: factory)
        refusedMaxConnections = Counter(label: "mt_agent_connections_refused_total", dimensions: [("reason", "max-connections")], factory: factory)
        refusedMaxUnauthenticated = Counter(label: "mt_agent_connections_refused_total", dimensions: [("reason", "max-unauthenticated")],
                                            factory: factory)
        handshakeTimeouts = Counter(label: "mt_agent_handshake_timeouts_total", factory: factory)
        pendingBytes = Gauge(label: "mt_agent_pending_bytes", factory: factory)
        pendingBudgetWaits = Counter(label: "mt_agent_pending_budget_waits_total", factory: factory)
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

    func connections(_ counts: ConnectionAdmission.Counts) {
        unauthenticatedConnections.record(Int64(counts.unauthenticated))
        authenticatedConnections.record(Int64(counts.open - counts.unauthenticated))
    }

    func refused(_ refusal: ConnectionAdmission.Refusal) {
        switch refusal {
        case .maxConnections: refusedMaxConnections.increment()
        case .maxUnauthenticated: refusedMaxUnauthenticated.increment()
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
