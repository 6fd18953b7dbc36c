import NIOCore

/// What an unauthenticated peer may cost, and how much received data the service holds before it
/// stops reading (DESIGN §7a; docs/PROTOCOL.md §3.3). Each limit has a config key, a metric and a
/// log line when it bites.
public struct ServerLimits: Sendable, Equatable {
    /// From accept to WELCOME, heartbeats or not (`handshake_timeout`).
    public var handshakeTimeout: TimeAmount = .seconds(10)
    /// Connections open at once, authenticated or not (`max_connections`).
    public var maxConnections = 1024
    /// Connections open at once that have not been sent WELCOME (`max_unauthenticated_connections`).
    public var maxUnauthenticatedConnections = 64
    /// Passphrase proofs checked per second, service-wide, on top of the per-address delays
    /// (`auth_checks_per_second`).
    public var authChecksPerSecond = 20
    /// WRITE data received and not yet applied, across every connection (`max_pending_bytes`).
    public var maxPendingBytes = 256 << 20

    public init() {}

    public init(handshakeTimeout: TimeAmount = .seconds(10), maxConnections: Int = 1024, maxUnauthenticatedConnections: Int = 64,
                authChecksPerSecond: Int = 20, maxPendingBytes: Int = 256 << 20) {
        self.handshakeTimeout = handshakeTimeout
        self.maxConnections = maxConnections
        self.maxUnauthenticatedConnections = maxUnauthenticatedConnections
        self.authChecksPerSecond = authChecksPerSecond
        self.maxPendingBytes = maxPendingBytes
    }
}
