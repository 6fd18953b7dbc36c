import Glibc
import Logging
import NIOCore
import NIOPosix
import NIOSSL
import ServiceLifecycle

/// What `serve` needs to listen.
public struct ServerConfiguration: Sendable {
    public var host: String
    public var port: Int
    public var certificatePEM: String
    public var privateKeyPEM: String
    public var credentials: MasterCredentials
    public var serverName: String
    public var heartbeat: TimeAmount
    /// Data a pair may have accepted but not yet made durable before reads from its connection
    /// stop (docs/PROTOCOL.md §5, flow control).
    public var maxPendingBytesPerPair: Int
    /// What unauthenticated peers may cost and how much data is held service-wide.
    public var limits: ServerLimits

    public init(host: String, port: Int, certificatePEM: String, privateKeyPEM: String, credentials: MasterCredentials,
                serverName: String, heartbeat: TimeAmount = .seconds(5), maxPendingBytesPerPair: Int = 16 << 20,
                limits: ServerLimits = ServerLimits()) {
        self.host = host; self.port = port; self.certificatePEM = certificatePEM; self.privateKeyPEM = privateKeyPEM
        self.credentials = credentials; self.serverName = serverName; self.heartbeat = heartbeat
        self.maxPendingBytesPerPair = maxPendingBytesPerPair
        self.limits = limits
    }
}

/// The listener: TLS 1.3 over TCP, one child task per connection, each connection's failure
/// contained. On graceful shutdown it stops accepting, lets each connection finish what it has
/// queued (durable, acked), then closes every pair.
public final class ReplicationServer: Service, Sendable {
    let configuration: ServerConfiguration
    let registry: PairRegistry
    let group: any EventLoopGroup
    let logger: Logger
    let onBound: @Sendable (SocketAddress) -> Void
    let throttle = AuthThrottle()
    let metrics: ServerMetrics
    let admission: ConnectionAdmission
    let proofBudget: ProofBudget
    let pendingBudget: PendingBudget

    public init(configuration: ServerConfiguration, store: any ReplicaStore, pool: NIOThreadPool,
                group: any EventLoopGroup = MultiThreadedEventLoopGroup.singleton, metrics: ServerMetrics = ServerMetrics(),
                logger: Logger, onBound: @escaping @Sendable (SocketAddress) -> Void = { _ in }) {
        self.configuration = configuration
        self.metrics = metrics
        self.registry = PairRegistry(store: store, pool: pool, maxPendingBytes: configuration.maxPendingBytesPerPair,
                                     metrics: metrics, logger: logger)
        self.group = group
        self.logger = logger
        self.onBound = onBound
        admission = ConnectionAdmission(limits: configuration.limits, metrics: metrics, logger: logger)
        proofBudget = ProofBudget(checksPerSecond: configuration.limits.authChecksPerSecond)
        pendingBudget = PendingBudget(limit: configuration.limits.maxPendingBytes, metrics: metrics, logger: logger)
    }

    /// What the accept loop receives: a connection to serve, or one refused at accept (already
    /// closing, before TLS).
    enum Accepted: Sendable {
        case connection(NIOAsyncChannel<ReceivedFrame, Frame>, HandshakeGate)
        case refused
    }

    /// The open pairs and their state.
    /// Stops replication of `group` now (failover, retention full): see
    /// `PairRegistry.stop(group:code:message:)`. Returns the pairs that were open.
    public func stop(group: String, code: ErrorCode, message: String) async -> [String] {
        await registry.stop(group: group, code: code, message: message)
    }

    public func pairs() async -> [(pairID: String, group: String, status: ReplicaStatus)] {
        await registry.snapshot()
    }

    public func run() async throws {
        var tls = TLSConfiguration.makeServerConfiguration(
            certificateChain: try NIOSSLCertificate.fromPEMBytes(Array(configuration.certificatePEM.utf8)).map { .certificate($0) },
            privateKey: .privateKey(try NIOSSLPrivateKey(bytes: Array(configuration.privateKeyPEM.utf8), format: .pem)))
        tls.minimumTLSVersion = .tlsv13
        // After the MT closes a connection it waits this long for the peer's close_notify: a
        // peer that never sends one (still pushing a refused frame, or hostile) holds its fd,
        // and its place under the connection caps, no longer than this.
        tls.shutdownTimeout = .seconds(1)
        let sslContext = try NIOSSLContext(configuration: tls)
        let heartbeat = configuration.heartbeat
        let (metrics, admission, logger, pendingBudget) = (self.metrics, self.admission, self.logger, self.pendingBudget)

        let server = try await ServerBootstrap(group: group)
            .serverChannelOption(.socketOption(.so_reuseaddr), value: 1)
            .serverChannelOption(.backlog, value: 64)
            .childChannelOption(.tcpOption(.tcp_nodelay), value: 1)
            .bind(host: configuration.host, port: configuration.port) { child -> EventLoopFuture<Accepted> in
                child.eventLoop.makeCompletedFuture { () throws -> Accepted in
                    // Over a cap: closed before TLS costs anything. Not an error, which would end
                    // the accept loop.
                    guard let gate = admission.admit() else {
                        child.close(promise: nil)
                        return .refused
                    }
                    child.closeFuture.whenComplete { _ in gate.closed() }
                    Self.enforceDeadline(gate, on: child, metrics: metrics, logger: logger)
                    try child.pipeline.syncOperations.addHandler(NIOSSLServerHandler(context: sslContext))
                    let peer = child.remoteAddress.map { Self.describe($0) } ?? "unknown"
                    try child.pipeline.syncOperations.addFrameCodec(
                        heartbeat: heartbeat, limit: gate.frameLimit, onReadTimeout: metrics.countTimeout,
                        writeStall: heartbeat * 12, onWriteStall: {
                            metrics.countTimeout()
                            logger.warning("closing connection: the sender has read nothing it was sent for 12 heartbeat intervals",
                                           metadata: ["peer": "\(peer)", "limit.name": "write_stall", "limit.value": "\(heartbeat * 12)"])
                        })
                    try child.pipeline.syncOperations.addHandler(PendingBudgetHandler(budget: pendingBudget))
                    return .connection(try NIOAsyncChannel<ReceivedFrame, Frame>(
                        wrappingChannelSynchronously: child,
                        configuration: .init(backPressureStrategy: .init(lowWatermark: 2, highWatermark: 8))), gate)
                }
            }
        let address = server.channel.localAddress
        logger.info("listening", metadata: ["address": "\(address.map { "\($0)" } ?? "?")"])
        if let address { onBound(address) }

        let (registry, configuration, throttle) = (self.registry, self.configuration, self.throttle)
        let proofBudget = self.proofBudget
        try await withGracefulShutdownHandler {
            try await withThrowingDiscardingTaskGroup { tasks in
                try await server.executeThenClose { connections in
                    var next: UInt64 = 0
                    for try await accepted in connections {
                        guard case .connection(let connection, let gate) = accepted else { continue }
                        next += 1
                        let peer = connection.channel.remoteAddress.map { Self.describe($0) } ?? "unknown"
                        var connLogger = logger
                        connLogger[metadataKey: "peer"] = "\(peer)"
                        let handler = Connection(id: next, peer: peer, configuration: configuration, registry: registry,
                                                 throttle: throttle, gate: gate, proofBudget: proofBudget,
                                                 metrics: metrics, logger: connLogger)
                        tasks.addTask {
                            // Graceful shutdown cancels the read loop; the connection then drains,
                            // acks and says goodbye (Connection.run).
                            try? await cancelWhenGracefulShutdown { await handler.run(connection) }
                        }
                    }
                }
            }
        } onGracefulShutdown: {
            logger.info("stopping: no new connections; finishing what is in flight")
            server.channel.close(promise: nil)
        }
        await registry.closeAll()
        logger.info("stopped: everything acknowledged is durable")
    }

    /// At the handshake deadline a connection not yet authenticated gets ERROR timeout and is
    /// closed, whatever it sent meanwhile (heartbeats included) and whatever its task is waiting for.
    static func enforceDeadline(_ gate: HandshakeGate, on child: any Channel, metrics: ServerMetrics, logger: Logger) {
        let timer = child.eventLoop.scheduleTask(deadline: gate.deadline) {
            guard gate.expire() else { return }
            metrics.handshakeTimeouts.increment()
            metrics.countTimeout()
            logger.warning("closing connection: no WELCOME within handshake_timeout", metadata: [
                "peer": "\(child.remoteAddress.map { describe($0) } ?? "unknown")", "limit.name": "handshake_timeout",
            ])
            child.writeAndFlush(Frame.error(code: .timeout, message: "the handshake did not complete within handshake_timeout; reconnect and authenticate promptly"),
                               promise: nil)
            child.close(promise: nil)
        }
        child.closeFuture.whenComplete { _ in timer.cancel() }
    }

    static func describe(_ address: SocketAddress) -> String {
        switch address {
        case .v4: "\(address.ipAddress ?? "?"):\(address.port ?? 0)"
        case .v6: "[\(address.ipAddress ?? "?")]:\(address.port ?? 0)"
        case .unixDomainSocket: "unix"
        }
    }
}

extension ChannelPipeline.SynchronousOperations {
    /// Frame decoder and encoder, plus heartbeats: a HEARTBEAT after `heartbeat` without writing,
    /// an ERROR timeout + close after 3 × `heartbeat` without reading while asking to read, and,
    /// with `writeStall`, a close when the peer has taken nothing for that long (`onReadTimeout`,
    /// `onWriteStall` are called then). The master target sets it; a sender does not, since an MT
    /// that holds back its reads for a slow disk is not a peer to give up on.
    /// `limit`, when given, is the decoder's maximum frame length, read at each header.
    public func addFrameCodec(heartbeat: TimeAmount, limit: FrameLengthLimit? = nil, onReadTimeout: @escaping @Sendable () -> Void = {},
                              writeStall: TimeAmount? = nil, onWriteStall: @escaping @Sendable () -> Void = {}) throws {
        try addHandler(ByteToMessageHandler(limit.map { FrameDecoder(limit: $0) } ?? FrameDecoder()))
        try addHandler(MessageToByteHandler(FrameEncoder()))
        try addHandler(IdleStateHandler(readTimeout: heartbeat * 3, writeTimeout: heartbeat))
        try addHandler(HeartbeatHandler(readTimeout: heartbeat * 3, writeStall: writeStall, onReadTimeout: onReadTimeout,
                                        onWriteStall: onWriteStall))
    }
}

/// Turns idle events into heartbeats and timeouts. The peer is idle only while this side asks to
/// read: when flow control or the pending budget holds reads back (handlers nearer the tail keep
/// `read()` from passing here), the peer's frames wait in TCP, unread, and the silence is ours.
final class HeartbeatHandler: ChannelDuplexHandler, RemovableChannelHandler {
    typealias InboundIn = Frame
    typealias InboundOut = Frame
    typealias OutboundIn = Frame
    typealias OutboundOut = Frame

    let readTimeout: TimeAmount
    /// How long the channel may stay unwritable: a peer that takes nothing we send (its ACKs,
    /// HASHES) would otherwise hold its pairs' workers, and a failover's stop of them, for ever.
    /// Long enough for a 2 MiB HASHES frame on a slow link, which keeps the channel unwritable
    /// until it is all sent.
    let writeStall: TimeAmount?
    let onReadTimeout: @Sendable () -> Void
    let onWriteStall: @Sendable () -> Void
    /// When the oldest read request that no frame has answered yet passed here; nil while reads
    /// are held back.
    private var readingSince: NIODeadline?
    /// Since when the channel has been unwritable; nil while writable.
    private var unwritableSince: NIODeadline?

    init(readTimeout: TimeAmount, writeStall: TimeAmount?, onReadTimeout: @escaping @Sendable () -> Void,
         onWriteStall: @escaping @Sendable () -> Void) {
        self.readTimeout = readTimeout
        self.writeStall = writeStall
        self.onReadTimeout = onReadTimeout
        self.onWriteStall = onWriteStall
    }

    func channelWritabilityChanged(context: ChannelHandlerContext) {
        unwritableSince = context.channel.isWritable ? nil : (unwritableSince ?? .now())
        context.fireChannelWritabilityChanged()
    }

    func read(context: ChannelHandlerContext) {
        if readingSince == nil { readingSince = .now() }
        context.read()
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        readingSince = nil
        context.fireChannelRead(data)
    }

    func userInboundEventTriggered(context: ChannelHandlerContext, event: Any) {
        guard let idle = event as? IdleStateHandler.IdleStateEvent else {
            context.fireUserInboundEventTriggered(event)
            return
        }
        switch idle {
        case .write:
            // Nothing passes to be written while the channel is unwritable, so this fires every
            // interval then.
            if let writeStall, let since = unwritableSince, NIODeadline.now() - since >= writeStall {
                onWriteStall()
                context.close(promise: nil)  // no ERROR: the peer reads nothing
                return
            }
            var now = timespec()
            clock_gettime(CLOCK_REALTIME, &now)
            let millis = UInt64(now.tv_sec) * 1000 + UInt64(now.tv_nsec) / 1_000_000
            context.writeAndFlush(wrapOutboundOut(.heartbeat(unixMillis: millis)), promise: nil)
        case .read:
            // IdleStateHandler counts from the last frame; what counts here is how long we have
            // been asking for one (it fires again a timeout later if this is too early).
            guard let since = readingSince, NIODeadline.now() - since >= readTimeout else { return }
            onReadTimeout()
            context.writeAndFlush(wrapOutboundOut(.error(code: .timeout, message: "nothing received for 3 heartbeat intervals")), promise: nil)
            context.close(promise: nil)
        case .all:
            break
        }
    }
}
