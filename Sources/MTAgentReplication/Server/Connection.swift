import Logging
import MTAgentCore
import NIOCore

/// One sender connection, after TLS: the handshake, then its pairs' frames in order. Any
/// protocol violation ends this connection with an ERROR frame and a log line, never the service.
struct Connection {
    let id: UInt64
    let peer: String
    let configuration: ServerConfiguration
    let registry: PairRegistry
    let throttle: AuthThrottle
    let gate: HandshakeGate
    let proofBudget: ProofBudget
    let metrics: ServerMetrics
    var logger: Logger

    /// A protocol violation: sent as ERROR, then the connection closes.
    struct Violation: Error {
        var code: ErrorCode
        var message: String
    }

    struct PeerClosed: Error {}

    /// The handshake deadline passed: the event loop has already sent ERROR timeout and closed.
    struct HandshakeExpired: Error {}

    func run(_ channel: NIOAsyncChannel<ReceivedFrame, Frame>) async {
        do {
            try await channel.executeThenClose { inbound, outbound in
                // Every frame the master target sends passes here: its errors are counted once.
                let send: @Sendable (Frame) async -> Void = { [metrics] frame in
                    metrics.count(frame)
                    try? await outbound.write(frame)
                }
                var handles: [UInt32: PairDriver] = [:]
                var farewell: Frame?
                do {
                    try await serve(inbound: inbound, send: send, handles: &handles)
                } catch let violation as Violation {
                    logger.warning("closing connection: \(violation.message)", metadata: ["error.code": "\(violation.code)"])
                    farewell = .error(code: violation.code, message: violation.message)
                } catch let error as FrameError {
                    logger.warning("closing connection: \(error)", metadata: ["error.code": "\(error.code)"])
                    farewell = .error(code: error.code, message: error.description)
                } catch is PeerClosed {
                    // The sender said why in its own ERROR, already logged.
                } catch is HandshakeExpired {
                    // Answered and closed at the deadline (ReplicationServer.enforceDeadline).
                } catch is CancellationError {
                    farewell = .error(code: .shuttingDown, message: "the service is stopping; reconnect later")
                }
                // Whatever this connection queued is made durable and, while the connection still
                // holds the pair, acked before the farewell: nothing applied goes unacknowledged.
                for driver in handles.values where await driver.holds(connection: id) {
                    await driver.drain()
                    await driver.detach(connection: id)
                }
                if let farewell { await send(farewell) }
            }
        } catch {
            logger.debug("connection ended", metadata: ["error": "\(error)"])
        }
    }

    private func serve(inbound: NIOAsyncChannelInboundStream<ReceivedFrame>, send: @escaping @Sendable (Frame) async -> Void,
                       handles: inout [UInt32: PairDriver]) async throws {
        var handshake = HandshakeMachine()
        for try await received in inbound {
            let frame = received.frame
            try Task.checkCancellation()
            switch handshake.receive(frame) {
            case .none:
                continue
            case .refuse(let code, let message):
                throw Violation(code: code, message: message)
            case .challenge(let nonce):
                let c = configuration.credentials
                await send(.challenge(Frame.Challenge(version: PassphraseProof.version, nonce: nonce, kdf: "scrypt", n: c.n, r: c.r, p: c.p,
                                                      salt: c.salt, serverName: configuration.serverName)))
                if case .hello(let hello) = frame { logger.debug("hello", metadata: ["sender": "\(hello.senderName)"]) }
            case .checkProof(let mac, let senderNonce, let masterNonce):
                try await waitForProofCheck()
                let key = configuration.credentials.key
                let right = PassphraseProof.verify(mac, expected: PassphraseProof.senderMAC(key: key, senderNonce: senderNonce, masterNonce: masterNonce))
                if case .refuse(let code, let message)? = handshake.proofChecked(right) {
                    let failures = throttle.failed(peerAddress)
                    metrics.authFailures.increment()
                    logger.warning("passphrase proof failed", metadata: ["auth.failures": "\(failures)"])
                    throw Violation(code: code, message: message)
                }
                throttle.succeeded(peerAddress)
                // Raises the frame limit before WELCOME leaves: the sender's next frame may be a 4 MiB WRITE.
                guard gate.authenticate() else { throw HandshakeExpired() }
                logger.info("sender authenticated")
                await send(.welcome(mac: PassphraseProof.masterMAC(key: key, senderNonce: senderNonce, masterNonce: masterNonce),
                                    heartbeatMillis: UInt32(configuration.heartbeat.nanoseconds / 1_000_000),
                                    maxWrite: UInt32(FrameLimits.maxWriteData)))
            case .deliver(let frame):
                try await handle(frame, lease: received.lease, send: send, handles: &handles)
            }
        }
    }

    /// Holds a proof until it may be checked: the per-address delay after repeated failures,
    /// then a slot in the service-wide budget of checks per second. Neither wait goes past the
    /// handshake deadline; a proof without a slot before it is never checked.
    private func waitForProofCheck() async throws {
        let deadline = gate.deadline
        let delay = throttle.delay(for: peerAddress)
        let earliest = NIODeadline.now() + delay
        guard earliest <= deadline else {
            try await sleep(until: deadline)
            throw HandshakeExpired()
        }
        try await sleep(until: earliest)
        let now = NIODeadline.now()
        guard let slot = proofBudget.reserve(now: now, latest: deadline) else {
            metrics.authBudgetWaits.increment()
            logger.notice("passphrase proof not checked: auth_checks_per_second budget taken until the handshake deadline",
                          metadata: ["limit.name": "auth_checks_per_second"])
            try await sleep(until: deadline)
            throw HandshakeExpired()
        }
        if slot > now {
            metrics.authBudgetWaits.increment()
            try await sleep(until: slot)
        }
        guard !gate.isExpired else { throw HandshakeExpired() }
        metrics.authChecks.increment()
    }

    private func sleep(until deadline: NIODeadline) async throws {
        let wait = deadline - .now()
        if wait > .zero { try await Task.sleep(nanoseconds: UInt64(wait.nanoseconds)) }
    }

    private var peerAddress: String {
        // "[::1]:5000" / "127.0.0.1:5000" → the address without the port.
        guard let colon = peer.lastIndex(of: ":") else { return peer }
        return String(peer[..<colon])
    }

    /// `lease`: a WRITE's share of the service-wide `PendingBudget`, held until it is applied.
    private func handle(_ frame: Frame, lease: PendingBudget.Lease?, send: @escaping @Sendable (Frame) async -> Void,
                        handles: inout [UInt32: PairDriver]) async throws {
        switch frame {
        case .heartbeat:
            return  // filtered before; kept so the switch names every frame
        case .openPair(let open):
            guard handles[open.handle] == nil else {
                throw Violation(code: .unexpectedFrame, message: "OPEN_PAIR for handle \(open.handle), which is already open on this connection")
            }
            // Ids become directory names on the retention volume: refused before anything is created.
            do {
                _ = try Identifier(validating: open.pairID, kind: .pair)
                _ = try Identifier(validating: open.groupID, kind: .group)
            } catch {
                logger.warning("pair refused: bad id", metadata: ["pair.handle": "\(open.handle)", "error": "\(error)"])
                await send(.pairError(handle: open.handle, code: .badRequest, message: "\(error)"))
                break
            }
            guard open.sourceSize > 0 else {
                logger.warning("pair refused: source size 0", metadata: ["pair.handle": "\(open.handle)", "pair.id": "\(open.pairID)"])
                await send(.pairError(handle: open.handle, code: .badRequest,
                                      message: "OPEN_PAIR source size is 0: a pair replicates a source of at least one byte"))
                break
            }
            var pairLogger = logger
            pairLogger[metadataKey: "pair.id"] = "\(open.pairID)"
            pairLogger[metadataKey: "group.id"] = "\(open.groupID)"
            do {
                let (driver, status) = try await registry.attach(open, sink: PairSink(connection: id, handle: open.handle, send: send))
                handles[open.handle] = driver
                pairLogger.info("pair opened", metadata: ["target": "\(open.target)", "state": "\(status.state.rawValue)", "durable.seq": "\(status.durableSeq)"])
                await send(.pairState(Frame.PairStateReport(handle: open.handle, state: Frame.WireState(status.state), durableSeq: status.durableSeq,
                                                            resyncOffset: status.resyncOffset, targetSize: status.targetSize, reason: status.reason ?? "")))
            } catch let refusal as StoreRefusal {
                pairLogger.warning("pair refused: \(refusal.message)", metadata: ["target": "\(open.target)"])
                let code: ErrorCode = switch refusal.kind {
                case .targetRefused: .targetRefused
                case .pairConflict: .pairConflict
                case .ioError: .ioError
                case .failedOver: .failedOver
                case .retentionFull: .retentionFull
                case .takenOver: .pairTakenOver
                }
                await send(.pairError(handle: open.handle, code: code, message: refusal.message))
            } catch {
                pairLogger.error("could not open pair", metadata: ["error": "\(error)"])
                await send(.pairError(handle: open.handle, code: .ioError, message: "\(error)"))
            }
        case .closePair(let handle):
            let driver = try driver(handle, handles)
            await driver.drain()
            await driver.detach(connection: id)
            handles[handle] = nil
        case .write(let write):
            var pending = PairOp.Pending(write: write)
            pending.lease = lease
            try await enqueue(pending, handle: write.handle, handles: &handles)
        case .tag(let t):
            let kind = TagKind(rawValue: t.kind) ?? .crash
            try await enqueue(PairOp.Pending(.tag(seq: t.seq, tagID: t.tagID, kind: kind, name: t.name, sourceTime: t.sourceTime)), handle: t.handle, handles: &handles)
        case .resyncBegin(let handle, let seq):
            try await enqueue(PairOp.Pending(.resyncBegin(seq: seq)), handle: handle, handles: &handles)
        case .resyncMark(let handle, let seq, let through):
            try await enqueue(PairOp.Pending(.resyncMark(seq: seq, through: through)), handle: handle, handles: &handles)
        case .resyncDone(let handle, let seq):
            try await enqueue(PairOp.Pending(.resyncDone(seq: seq)), handle: handle, handles: &handles)
        case .hashRequest(let handle, let offset, let chunkSize, let count):
            let driver = try driver(handle, handles)
            guard chunkSize >= 4096, chunkSize <= 4 << 20, chunkSize & (chunkSize - 1) == 0 else {
                await send(.pairError(handle: handle, code: .badRequest, message: "HASH_REQUEST chunk size \(chunkSize) is not a power of two from 4 KiB to 4 MiB"))
                return
            }
            _ = await driver.requestHashes(offset: offset, chunkSize: Int(chunkSize), count: Int(count), from: id)
        case .hello, .proof:
            throw Violation(code: .unexpectedFrame, message: "handshake frame type 0x\(String(frame.type, radix: 16)) after the handshake")
        case .challenge, .welcome, .pairState, .pairError, .ack, .hashes:
            throw Violation(code: .unexpectedFrame, message: "frame type 0x\(String(frame.type, radix: 16)) is sent by a master target, not to one")
        case .error(let code, let message):
            logger.warning("sender reported an error: \(message)", metadata: ["error.code": "\(code)"])
            throw PeerClosed()
        }
    }

    /// Hands a pair frame to its driver. Frames for a pair another connection took over (this one
    /// was told with PAIR_ERROR pair-taken-over) are ignored: a stale connection never writes.
    private func enqueue(_ op: PairOp.Pending, handle: UInt32, handles: inout [UInt32: PairDriver]) async throws {
        _ = await try driver(handle, handles).enqueue(op, from: id)
    }

    private func driver(_ handle: UInt32, _ handles: [UInt32: PairDriver]) throws -> PairDriver {
        guard let d = handles[handle] else {
            throw Violation(code: .unexpectedFrame, message: "frame for pair handle \(handle), which is not open on this connection")
        }
        return d
    }
}

extension Frame.WireState {
    init(_ state: PairState) {
        switch state {
        case .new: self = .new
        case .resyncing: self = .resyncing
        case .inSync: self = .inSync
        case .resyncRequired: self = .resyncRequired
        }
    }

    public var pairState: PairState {
        switch self {
        case .new: .new
        case .resyncing: .resyncing
        case .inSync: .inSync
        case .resyncRequired: .resyncRequired
        }
    }
}
