import Logging
import NIOCore
import Synchronization

/// Counts the connections open, and the ones among them not yet authenticated, against
/// `ServerLimits`; a connection over either cap is refused at accept, before TLS. Each admitted
/// connection gets a `HandshakeGate` that tells the counts when it authenticates and closes.
final class ConnectionAdmission: Sendable {
    struct Counts { var open = 0; var unauthenticated = 0 }

    enum Refusal: String {
        case maxConnections = "max-connections"
        case maxUnauthenticated = "max-unauthenticated"
    }

    let limits: ServerLimits
    let metrics: ServerMetrics
    let logger: Logger
    private let counts = Mutex(Counts())
    private let refusalLog = RateLimitedLog()

    init(limits: ServerLimits, metrics: ServerMetrics, logger: Logger) {
        self.limits = limits
        self.metrics = metrics
        self.logger = logger
    }

    var current: Counts { counts.withLock { $0 } }

    /// A gate for a new connection, or nil (counted and logged) when a cap is reached.
    func admit(now: NIODeadline = .now()) -> HandshakeGate? {
        let result: Result<Void, RefusalError> = counts.withLock { c in
            if c.open >= limits.maxConnections { return .failure(RefusalError(refusal: .maxConnections)) }
            if c.unauthenticated >= limits.maxUnauthenticatedConnections { return .failure(RefusalError(refusal: .maxUnauthenticated)) }
            c.open += 1
            c.unauthenticated += 1
            metrics.connections(c)  // under the lock: the gauges never go back in time
            return .success(())
        }
        switch result {
        case .success:
            return HandshakeGate(admission: self, deadline: now + limits.handshakeTimeout)
        case .failure(let error):
            metrics.refused(error.refusal)
            refusalLog.event(now: now) { since in
                let (limit, key) = error.refusal == .maxConnections
                    ? (limits.maxConnections, "max_connections") : (limits.maxUnauthenticatedConnections, "max_unauthenticated_connections")
                logger.warning("refusing connections: \(key) (\(limit)) reached", metadata: [
                    "limit.name": "\(key)", "limit.value": "\(limit)", "connections.refused": "\(since)",
                ])
            }
            return nil
        }
    }

    struct RefusalError: Error { var refusal: Refusal }

    fileprivate func authenticated() {
        counts.withLock { c in
            c.unauthenticated -= 1
            metrics.connections(c)
        }
    }

    fileprivate func closed(wasAuthenticated: Bool) {
        counts.withLock { c in
            c.open -= 1
            if !wasAuthenticated { c.unauthenticated -= 1 }
            metrics.connections(c)
        }
    }
}

/// One connection's way through the handshake: it must be authenticated before `deadline`
/// (heartbeats do not extend it) or it expires; either happens once. Until it is authenticated
/// its decoder reads frames of at most `FrameLimits.maxHandshakeFrameLength`.
final class HandshakeGate: Sendable {
    enum State { case handshaking, authenticated, expired, closed }

    let deadline: NIODeadline
    let frameLimit = FrameLengthLimit(FrameLimits.maxHandshakeFrameLength)
    private let admission: ConnectionAdmission
    private let state = Mutex(State.handshaking)

    fileprivate init(admission: ConnectionAdmission, deadline: NIODeadline) {
        self.admission = admission
        self.deadline = deadline
    }

    /// Called just before WELCOME is sent; false when the deadline passed (or the connection
    /// closed) first, and WELCOME must not be sent.
    func authenticate() -> Bool {
        let ok = state.withLock { s in
            guard s == .handshaking else { return false }
            s = .authenticated
            return true
        }
        guard ok else { return false }
        frameLimit.raise(to: FrameLimits.maxFrameLength)
        admission.authenticated()
        return true
    }

    /// Called at the deadline; true when the connection had not authenticated and must now be
    /// closed.
    func expire() -> Bool {
        state.withLock { s in
            guard s == .handshaking else { return false }
            s = .expired
            return true
        }
    }

    var isExpired: Bool { state.withLock { $0 == .expired } }

    /// Called once, when the channel has closed.
    func closed() {
        let was = state.withLock { s in
            let was = s
            s = .closed
            return was
        }
        guard was != .closed else { return }
        admission.closed(wasAuthenticated: was == .authenticated)
    }
}
