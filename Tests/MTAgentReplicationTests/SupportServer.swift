import Crypto
import Dispatch
import Glibc
import Logging
import MTAgentCore
import MTAgentLinux
@testable import MTAgentReplication
import NIOConcurrencyHelpers
import NIOCore
import NIOPosix
import NIOSSL
import ServiceLifecycle
import Testing

// Support for the server/sender tests: a self-signed TLS identity made with openssl, an in-memory
// ReplicaStore that follows docs/PROTOCOL.md §5, the real ReplicationServer run in a ServiceGroup on
// 127.0.0.1:0, a raw TLS client for hostile frame sequences, and a "bystander" pair that replicates
// through a real SenderSession while another connection misbehaves.

// MARK: - Errors and small helpers

struct TestFailure: Error, CustomStringConvertible {
    var description: String
    init(_ description: String) { self.description = description }
}

/// Polls `condition` every 10 ms until it holds or `timeout` passes; returns whether it held.
@discardableResult
func eventually(timeout: Duration = .seconds(20), _ condition: () async throws -> Bool) async rethrows -> Bool {
    let deadline = ContinuousClock.now + timeout
    while ContinuousClock.now < deadline {
        if try await condition() { return true }
        try? await Task.sleep(for: .milliseconds(10))
    }
    return try await condition()
}

/// Deterministic, position-dependent bytes: each test pattern is distinguishable from every other.
func pattern(_ count: Int, seed: UInt8) -> [UInt8] {
    [UInt8](unsafeUninitializedCapacity: count) { out, initialized in
        for i in 0..<count { out[i] = UInt8(truncatingIfNeeded: i &* 31 &+ (i >> 8) &+ Int(seed) &* 97) }
        initialized = count
    }
}

func sha256(_ bytes: [UInt8]) -> [UInt8] { Array(SHA256.hash(data: bytes)) }

/// A short, comparable stand-in for a byte array in expectations (failures print this, not megabytes).
func digest(_ bytes: some Collection<UInt8>) -> String {
    let d = sha256(Array(bytes))
    return "\(bytes.count) bytes, sha256 " + d.prefix(8).map { String(format2: $0) }.joined()
}

func buffer(_ bytes: [UInt8]) -> ByteBuffer { ByteBuffer(bytes: bytes) }

/// A WRITE frame with a correct checksum (or the given wrong one).
func writeFrame(_ handle: UInt32, seq: UInt64, offset: UInt64, _ data: [UInt8], sha: [UInt8]? = nil) -> Frame {
    .write(Frame.Write(handle: handle, seq: seq, offset: offset, sha256: sha ?? sha256(data), data: buffer(data)))
}

// MARK: - TLS identity

/// A self-signed P-256 certificate made by openssl in a temporary directory (removed at once), and
/// the SHA-256 fingerprint of its DER as openssl computes it (64 lowercase hex digits): the
/// sender's pin is checked against an independent implementation.
struct TestIdentity: Sendable {
    let certificatePEM: String
    let privateKeyPEM: String
    let fingerprint: String

    /// Made once per test process (openssl runs once).
    static let shared: TestIdentity = {
        do { return try make() } catch { fatalError("cannot make the test TLS identity: \(error)") }
    }()

    static func make() throws -> TestIdentity {
        var template = Array("/tmp/mt-srvtest-XXXXXX".utf8CString)
        guard let made = template.withUnsafeMutableBufferPointer({ mkdtemp($0.baseAddress!) }) else {
            throw TestFailure("mkdtemp: \(String(cString: strerror(errno)))")
        }
        let dir = String(cString: made)
        defer {
            unlink(dir + "/k.pem")
            unlink(dir + "/c.pem")
            rmdir(dir)
        }
        let req = try ProcessRunner().run([
            "openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes", "-days", "1",
            "-subj", "/CN=localhost", "-keyout", dir + "/k.pem", "-out", dir + "/c.pem",
        ])
        guard req.status == 0 else { throw TestFailure("openssl req failed: \(req.stderr)") }
        let fp = try ProcessRunner().run(["openssl", "x509", "-noout", "-fingerprint", "-sha256", "-in", dir + "/c.pem"])
        guard fp.status == 0, let eq = fp.stdout.firstIndex(of: "=") else { throw TestFailure("openssl x509 failed: \(fp.stdout)") }
        let hex = fp.stdout[fp.stdout.index(after: eq)...].filter { $0.isHexDigit }.lowercased()
        guard hex.count == 64 else { throw TestFailure("unexpected fingerprint output: \(fp.stdout)") }
        return TestIdentity(certificatePEM: try readText(dir + "/c.pem"), privateKeyPEM: try readText(dir + "/k.pem"), fingerprint: hex)
    }

    static func readText(_ path: String) throws -> String {
        guard let f = fopen(path, "r") else { throw TestFailure("cannot open \(path)") }
        defer { fclose(f) }
        var out = [UInt8]()
        var chunk = [UInt8](repeating: 0, count: 4096)
        while true {
            let n = fread(&chunk, 1, chunk.count, f)
            if n == 0 { break }
            out += chunk[0..<n]
        }
        return String(decoding: out, as: UTF8.self)
    }
}

// MARK: - Passphrase key

enum TestKeys {
    static let passphrase = "correct horse battery staple"
    /// What the MT stores: 32 fixed bytes.
    static let key: [UInt8] = (0..<32).map { UInt8(truncatingIfNeeded: $0 &* 7 &+ 3) }
    static let wrongKey: [UInt8] = (0..<32).map { UInt8(truncatingIfNeeded: $0 &* 11 &+ 5) }
    static let credentials = MasterCredentials(key: key, salt: Array("mt-agent-test-salt".utf8), n: 1 << 14, r: 8, p: 1)

    /// The sender's key derivation: the stored key for the right passphrase (and the salt and
    /// parameters the MT sent), other bytes otherwise.
    static func derive(_ passphrase: String) -> @Sendable ([UInt8], UInt64, UInt32, UInt32) throws -> [UInt8] {
        { salt, n, r, p in
            passphrase == Self.passphrase && salt == credentials.salt && n == credentials.n && r == credentials.r && p == credentials.p
                ? key : wrongKey
        }
    }
}

// MARK: - Logging

/// Keeps every log line (message + metadata) so tests can assert what the server logged.
final class LogCapture: Sendable {
    struct Line: Sendable { var level: Logger.Level; var message: String; var metadata: [String: String] }
    private let box = NIOLockedValueBox<[Line]>([])
    var lines: [Line] { box.withLockedValue { $0 } }
    func append(_ line: Line) { box.withLockedValue { $0.append(line) } }
    func contains(_ fragment: String) -> Bool { lines.contains { $0.message.contains(fragment) } }

    func logger(_ label: String) -> Logger {
        var logger = Logger(label: label) { _ in Handler(capture: self) }
        logger.logLevel = .debug
        return logger
    }

    struct Handler: LogHandler {
        let capture: LogCapture
        var metadata: Logger.Metadata = [:]
        var logLevel: Logger.Level = .debug
        subscript(metadataKey key: String) -> Logger.Metadata.Value? {
            get { metadata[key] }
            set { metadata[key] = newValue }
        }
        func log(level: Logger.Level, message: Logger.Message, metadata extra: Logger.Metadata?, source: String,
                 file: String, function: String, line: UInt) {
            var all = metadata
            if let extra { all.merge(extra) { $1 } }
            capture.append(Line(level: level, message: message.description, metadata: all.mapValues { "\($0)" }))
            if getenv("MT_TEST_LOG") != nil {
                let md = all.isEmpty ? "" : " " + all.map { "\($0)=\($1)" }.sorted().joined(separator: " ")
                let text = "[\(level)] \(message)\(md)\n"
                _ = text.withCString { write(2, $0, strlen($0)) }
            }
        }
    }
}

// MARK: - In-memory store

/// One op as the store accepted it (write data left out; the target holds it).
enum AppliedOp: Equatable, Sendable {
    case write(seq: UInt64, offset: UInt64, count: Int)
    case tag(seq: UInt64, tagID: UInt64, kind: TagKind, name: String)
    case resyncBegin(seq: UInt64)
    case resyncMark(seq: UInt64, through: UInt64)
    case resyncDone(seq: UInt64)

    var seq: UInt64 {
        switch self {
        case .write(let s, _, _), .tag(let s, _, _, _), .resyncBegin(let s), .resyncMark(let s, _), .resyncDone(let s): s
        }
    }
}

/// A byte-array target with the sequence rules of docs/PROTOCOL.md §5 (modelled on the journal's
/// PairApplier): duplicates ignored, a gap or a write past the end puts the pair in
/// resync-required and is refused, and from then on only RESYNC_BEGIN is accepted. Records every
/// accepted op and every apply call; can be slowed (a sleep per apply) or held (the next apply
/// blocks until released) to test backpressure.
final class MemoryPair: ReplicaPair, @unchecked Sendable {
    struct Record {
        var bytes: [UInt8]
        var state: PairState
        var durableSeq: UInt64 = 0
        var resyncOffset: UInt64 = 0
        var reason: String?
        var applied: [AppliedOp] = []
        /// Ops that were duplicates (seq ≤ durableSeq) and ignored.
        var duplicates = 0
        /// Ops refused (gap, out of range, or anything while resync-required).
        var refused = 0
        var applyCalls = 0
        /// Write bytes handed to each apply call (one entry per call).
        var batchBytes: [Int] = []
        var requireResyncReasons: [String] = []
        var hashRequests = 0
        /// The offset of every HASH_REQUEST, in arrival order.
        var hashOffsets: [UInt64] = []
        var closes = 0
        var opens = 0
        /// Seconds each apply call sleeps.
        var applyDelay: Duration = .zero
        var holdArmed = false
        var holding = false
        /// Calls in order ("apply", "applied", "failed", "close"): shows an apply after or during a close.
        var calls: [String] = []
        /// The next apply fails like an I/O error, and every one after it until the store opens the
        /// pair again (as a PairApplier stays failed until it is closed and reopened).
        var failArmed = false
        var failed = false
    }

    let name: String
    let size: Int
    private let box: NIOLockedValueBox<Record>
    private let hold = DispatchSemaphore(value: 0)

    init(name: String, size: Int, state: PairState, contents: [UInt8]? = nil) {
        self.name = name
        self.size = size
        var bytes = contents ?? [UInt8](repeating: 0, count: size)
        if bytes.count < size { bytes += [UInt8](repeating: 0, count: size - bytes.count) }
        box = NIOLockedValueBox(Record(bytes: bytes, state: state))
    }

    var record: Record { box.withLockedValue { $0 } }
    var bytes: [UInt8] { box.withLockedValue { $0.bytes } }
    var applied: [AppliedOp] { box.withLockedValue { $0.applied } }
    var writesApplied: [AppliedOp] { applied.filter { if case .write = $0 { true } else { false } } }

    func setApplyDelay(_ d: Duration) { box.withLockedValue { $0.applyDelay = d } }

    /// Sets the durable state, e.g. a resync an earlier sender left half done.
    func setRecord(_ change: (inout Record) -> Void) { box.withLockedValue { change(&$0) } }

    /// The next apply call blocks (on its pool thread) until `release()`.
    func holdNextApply() { box.withLockedValue { $0.holdArmed = true } }
    var isHolding: Bool { box.withLockedValue { $0.holding } }
    func release() { box.withLockedValue { $0.holdArmed = false }; hold.signal() }

    func opened() {
        box.withLockedValue {
            $0.opens += 1
            $0.failed = false
        }
    }

    /// The next apply throws, and so does every later one until the pair is opened again.
    func failNextApply() { box.withLockedValue { $0.failArmed = true } }

    // ReplicaPair

    var status: ReplicaStatus {
        box.withLockedValue { ReplicaStatus(state: $0.state, durableSeq: $0.durableSeq, resyncOffset: $0.resyncOffset, targetSize: UInt64(size), reason: $0.reason) }
    }

    func apply(_ ops: [PairOp]) throws -> ApplyResult {
        let (delay, mustHold) = box.withLockedValue { r -> (Duration, Bool) in
            r.applyCalls += 1
            r.calls.append("apply")
            r.batchBytes.append(ops.reduce(0) { if case .write(_, _, let d) = $1 { $0 + d.count } else { $0 } })
            let h = r.holdArmed
            if h { r.holdArmed = false; r.holding = true }
            return (r.applyDelay, h)
        }
        if mustHold {
            hold.wait()
            box.withLockedValue { $0.holding = false }
        }
        // After the hold, so a test can fail an apply that is already running.
        let fail = box.withLockedValue { r -> Bool in
            if r.failArmed { r.failArmed = false; r.failed = true }
            if r.failed { r.calls.append("failed") }
            return r.failed
        }
        if fail { throw TestFailure("injected I/O error: the pair must be closed and reopened") }
        if delay > .zero {
            let c = delay.components
            usleep(UInt32(c.seconds * 1_000_000 + c.attoseconds / 1_000_000_000_000))
        }
        return box.withLockedValue { r in
            var refusal: PairRefusal?
            func refuse(_ why: PairRefusal, requireResync: Bool) {
                r.refused += 1
                if requireResync { r.state = .resyncRequired; r.reason = why.description }
                if refusal == nil { refusal = why }
            }
            for op in ops {
                let seq = op.seq
                if seq <= r.durableSeq { r.duplicates += 1; continue }
                if case .resyncBegin = op {
                    r.durableSeq = seq; r.state = .resyncing; r.resyncOffset = 0; r.reason = nil
                    r.applied.append(.resyncBegin(seq: seq))
                    continue
                }
                if r.state == .resyncRequired {
                    refuse(.resyncRequired(reason: r.reason ?? ""), requireResync: false)
                    continue
                }
                if seq != r.durableSeq + 1 {
                    refuse(.sequenceGap(expected: r.durableSeq + 1, got: seq), requireResync: true)
                    continue
                }
                switch op {
                case .write(_, let offset, let data):
                    let (end, overflow) = offset.addingReportingOverflow(UInt64(data.count))
                    guard !overflow, end <= UInt64(size) else {
                        refuse(.writeOutOfRange(offset: offset, length: UInt64(data.count), targetSize: UInt64(size)), requireResync: true)
                        continue
                    }
                    r.bytes.replaceSubrange(Int(offset)..<Int(end), with: data)
                    r.applied.append(.write(seq: seq, offset: offset, count: data.count))
                case .tag(_, let tagID, let kind, let name, _):
                    r.applied.append(.tag(seq: seq, tagID: tagID, kind: kind, name: name))
                case .resyncMark(_, let through):
                    guard r.state == .resyncing else { refuse(.outsideResync(op: "resync-mark"), requireResync: true); continue }
                    guard through <= UInt64(size) else {
                        refuse(.markOutOfRange(through: through, targetSize: UInt64(size)), requireResync: true); continue
                    }
                    r.resyncOffset = through
                    r.applied.append(.resyncMark(seq: seq, through: through))
                case .resyncDone:
                    guard r.state == .resyncing else { refuse(.outsideResync(op: "resync-done"), requireResync: true); continue }
                    r.state = .inSync
                    r.resyncOffset = UInt64(size)
                    r.applied.append(.resyncDone(seq: seq))
                case .resyncBegin:
                    break
                }
                r.durableSeq = seq
            }
            r.calls.append("applied")
            return ApplyResult(durableSeq: r.durableSeq, refusal: refusal)
        }
    }

    func requireResync(reason: String) throws {
        box.withLockedValue { r in
            r.requireResyncReasons.append(reason)
            r.state = .resyncRequired
            r.reason = reason
        }
    }

    func chunkHashes(offset: UInt64, chunkSize: Int, count: Int) throws -> [UInt8] {
        let bytes = box.withLockedValue { r in
            r.hashRequests += 1
            r.hashOffsets.append(offset)
            return r.bytes
        }
        var out: [UInt8] = []
        var at = Int(clamping: offset)
        for _ in 0..<count where at < size {
            let end = min(at + chunkSize, size)
            out += sha256(Array(bytes[at..<end]))
            at = end
        }
        return out
    }

    func close() {
        box.withLockedValue {
            $0.closes += 1
            $0.calls.append("close")
        }
    }
}

/// Targets by name. An unknown name is refused the way the service refuses an unassigned target.
final class MemoryStore: ReplicaStore, @unchecked Sendable {
    struct Open: Equatable, Sendable { var pairID: String; var group: String; var target: String; var sourceSize: UInt64 }
    private let box = NIOLockedValueBox<(targets: [String: MemoryPair], refusals: [String: String], opens: [Open])>(([:], [:], []))

    static func unassignedMessage(_ target: String) -> String {
        "target.assigned: \(target) is not assigned to this master target — assign it with `mt-agent targets assign \(target)`"
    }

    @discardableResult
    func add(_ name: String, size: Int, state: PairState = .inSync, contents: [UInt8]? = nil) -> MemoryPair {
        let pair = MemoryPair(name: name, size: size, state: state, contents: contents)
        box.withLockedValue { $0.targets[name] = pair }
        return pair
    }

    func refuse(_ target: String, _ message: String) { box.withLockedValue { $0.refusals[target] = message } }

    var opens: [Open] { box.withLockedValue { $0.opens } }

    /// Unblocks every held apply (teardown: never leave a pool thread blocked).
    func releaseAll() {
        for pair in box.withLockedValue({ Array($0.targets.values) }) {
            pair.release()
            pair.release()
        }
    }

    func admit(pairID: String, group: String, target: String, sourceSize: UInt64) throws {
        _ = try admitted(target: target, sourceSize: sourceSize)
    }

    private func admitted(target: String, sourceSize: UInt64) throws -> MemoryPair {
        let (pair, refusal) = box.withLockedValue { s in (s.targets[target], s.refusals[target]) }
        if let refusal { throw StoreRefusal(.targetRefused, refusal) }
        guard let pair else { throw StoreRefusal(.targetRefused, Self.unassignedMessage(target)) }
        guard sourceSize <= UInt64(pair.size) else {
            throw StoreRefusal(.targetRefused, "target.size: \(target) (\(pair.size) bytes) is smaller than the source (\(sourceSize) bytes)")
        }
        return pair
    }

    func open(pairID: String, group: String, target: String, sourceSize: UInt64) throws -> any ReplicaPair {
        box.withLockedValue { s in s.opens.append(Open(pairID: pairID, group: group, target: target, sourceSize: sourceSize)) }
        let pair = try admitted(target: target, sourceSize: sourceSize)
        pair.opened()
        return pair
    }
}

// MARK: - The server under test

/// The real ReplicationServer in a ServiceGroup on 127.0.0.1, port 0.
final class TestServer: Sendable {
    let store: MemoryStore
    let server: ReplicationServer
    let serviceGroup: ServiceGroup
    let port: Int
    let pool: NIOThreadPool
    let log: LogCapture
    /// The senders' logs, apart from the server's.
    let senderLog = LogCapture()
    let runTask: Task<Void, Error>

    private init(store: MemoryStore, server: ReplicationServer, serviceGroup: ServiceGroup, port: Int, pool: NIOThreadPool,
                 log: LogCapture, runTask: Task<Void, Error>) {
        self.store = store; self.server = server; self.serviceGroup = serviceGroup; self.port = port; self.pool = pool
        self.log = log; self.runTask = runTask
    }

    static func start(store: MemoryStore, maxPendingBytesPerPair: Int = 32 << 20, heartbeat: TimeAmount = .seconds(5),
                      limits: ServerLimits = ServerLimits(), credentials: MasterCredentials = TestKeys.credentials) async throws -> TestServer {
        let identity = TestIdentity.shared
        let log = LogCapture()
        let pool = NIOThreadPool(numberOfThreads: 4)
        pool.start()
        let (ports, portContinuation) = AsyncStream<Int>.makeStream()
        let configuration = ServerConfiguration(
            host: "127.0.0.1", port: 0, certificatePEM: identity.certificatePEM, privateKeyPEM: identity.privateKeyPEM,
            credentials: credentials, serverName: "mt-test", heartbeat: heartbeat,
            maxPendingBytesPerPair: maxPendingBytesPerPair, limits: limits)
        let server = ReplicationServer(configuration: configuration, store: store, pool: pool, logger: log.logger("server"),
                                       onBound: { address in
                                           portContinuation.yield(address.port ?? 0)
                                           portContinuation.finish()
                                       })
        let serviceGroup = ServiceGroup(configuration: ServiceGroupConfiguration(services: [server], logger: log.logger("group")))
        let runTask = Task {
            defer { portContinuation.finish() }
            try await serviceGroup.run()
        }
        var iterator = ports.makeAsyncIterator()
        guard let port = await iterator.next(), port > 0 else {
            let result = await runTask.result
            try? await pool.shutdownGracefully()
            throw TestFailure("the server did not bind: \(result)")
        }
        return TestServer(store: store, server: server, serviceGroup: serviceGroup, port: port, pool: pool, log: log, runTask: runTask)
    }

    /// Graceful shutdown; returns how `run` ended.
    @discardableResult
    func stop() async -> Result<Void, Error> {
        store.releaseAll()
        await serviceGroup.triggerGracefulShutdown()
        let result = await runTask.result
        store.releaseAll()
        try? await pool.shutdownGracefully()
        return result
    }

    func sender(_ pairs: [PairSpec], passphrase: String = TestKeys.passphrase, fingerprint: String? = nil,
                maxUnackedBytes: Int = 64 << 20, heartbeat: TimeAmount = .seconds(5), derivationDelay: Duration = .zero) -> SenderSession {
        let derive = TestKeys.derive(passphrase)
        var configuration = SenderConfiguration(host: "127.0.0.1", port: port, fingerprint: fingerprint ?? TestIdentity.shared.fingerprint,
                                                senderName: "test-sender", deriveKey: { salt, n, r, p in
                                                    // scrypt takes time: model it.
                                                    if derivationDelay > .zero {
                                                        let c = derivationDelay.components
                                                        usleep(UInt32(c.seconds * 1_000_000 + c.attoseconds / 1_000_000_000_000))
                                                    }
                                                    return try derive(salt, n, r, p)
                                                })
        configuration.heartbeat = heartbeat
        return SenderSession(configuration: configuration, pairs: pairs, maxUnackedBytes: maxUnackedBytes, logger: senderLog.logger("sender"))
    }

    func raw(from: String? = nil, receiveBuffer: Int? = nil) async throws -> RawClient {
        try await RawClient.connect(port: port, from: from, receiveBuffer: receiveBuffer)
    }
}

/// Runs `body` against a fresh server and always shuts it down; the server's own run must end
/// without error.
func withServer(_ store: MemoryStore, maxPendingBytesPerPair: Int = 32 << 20, heartbeat: TimeAmount = .seconds(5),
                limits: ServerLimits = ServerLimits(), credentials: MasterCredentials = TestKeys.credentials,
                _ body: (TestServer) async throws -> Void) async throws {
    let server = try await TestServer.start(store: store, maxPendingBytesPerPair: maxPendingBytesPerPair, heartbeat: heartbeat,
                                            limits: limits, credentials: credentials)
    do {
        try await body(server)
    } catch {
        await server.stop()
        throw error
    }
    let result = await server.stop()
    if case .failure(let error) = result { Issue.record("the server's run ended with \(error)") }
}

// MARK: - Raw client

/// What the raw client writes: a well-formed frame, or any bytes at all.
enum RawOut: Sendable {
    case frame(Frame)
    case bytes([UInt8])
}

final class RawEncoder: ChannelOutboundHandler {
    typealias OutboundIn = RawOut
    typealias OutboundOut = ByteBuffer
    func write(context: ChannelHandlerContext, data: NIOAny, promise: EventLoopPromise<Void>?) {
        var out = context.channel.allocator.buffer(capacity: 64)
        switch unwrapOutboundIn(data) {
        case .frame(let frame): frame.encode(into: &out)
        case .bytes(let bytes): out.writeBytes(bytes)
        }
        context.write(wrapOutboundOut(out), promise: promise)
    }
}

/// Frames (and the end of the connection) as the raw client received them, with timeouts.
actor Inbox {
    enum Event: Sendable, CustomStringConvertible {
        case frame(Frame)
        case closed(String?)
        var description: String {
            switch self {
            case .frame(let f): "\(f)".prefix(300).description
            case .closed(let why): "closed(\(why ?? "eof"))"
            }
        }
    }

    private var events: [Event] = []
    private var closedEvent: Event?
    private var waiter: (id: Int, continuation: CheckedContinuation<Event?, Never>)?
    private var nextID = 0
    /// Everything received so far, in order.
    private(set) var history: [Event] = []

    func push(_ event: Event) {
        history.append(event)
        if case .closed = event { closedEvent = event }
        if let w = waiter {
            waiter = nil
            w.continuation.resume(returning: event)
        } else {
            events.append(event)
        }
    }

    /// The next event, or nil after `timeout`. After the close, returns the close again.
    func next(timeout: Duration) async -> Event? {
        if !events.isEmpty { return events.removeFirst() }
        if let closedEvent { return closedEvent }
        nextID += 1
        let id = nextID
        return await withCheckedContinuation { c in
            waiter = (id, c)
            Task {
                try? await Task.sleep(for: timeout)
                self.expire(id)
            }
        }
    }

    private func expire(_ id: Int) {
        if let w = waiter, w.id == id {
            waiter = nil
            w.continuation.resume(returning: nil)
        }
    }
}

/// A TLS client that speaks frames but follows no rules: the test decides what it sends.
/// Next to the socket: while held, no read reaches it, so the peer's frames stay in TCP (a client
/// that stops reading). Its state lives on the channel's event loop.
final class ReadGate: ChannelOutboundHandler, @unchecked Sendable {
    typealias OutboundIn = Any
    private var held = false

    func read(context: ChannelHandlerContext) {
        if !held { context.read() }
    }

    /// Reads nothing more from here on.
    func hold(on channel: Channel) async throws {
        try await channel.eventLoop.submit { self.held = true }.get()
    }
}

final class RawClient: Sendable {
    let channel: NIOAsyncChannel<Frame, RawOut>
    let inbox = Inbox()
    let readGate: ReadGate

    private init(channel: NIOAsyncChannel<Frame, RawOut>, readGate: ReadGate) { self.channel = channel; self.readGate = readGate }

    /// Stops reading from the socket for good: the master target's frames pile up in TCP.
    func stopReading() async throws { try await readGate.hold(on: channel.channel) }

    /// NIO requires the writer to be finished before the channel goes: a test that returns early
    /// (or forgets `close()`) must not crash the test process.
    deinit { close() }

    /// `from`: a local address to connect from (any of 127.0.0.0/8 works on loopback), so one
    /// test can be many peers.
    static func connect(port: Int, from: String? = nil, receiveBuffer: Int? = nil) async throws -> RawClient {
        var tls = TLSConfiguration.makeClientConfiguration()
        tls.certificateVerification = .none
        tls.minimumTLSVersion = .tlsv13
        let context = try NIOSSLContext(configuration: tls)
        var bootstrap = ClientBootstrap(group: MultiThreadedEventLoopGroup.singleton)
        if let from { bootstrap = bootstrap.bind(to: try SocketAddress(ipAddress: from, port: 0)) }
        if let receiveBuffer { bootstrap = bootstrap.channelOption(.socketOption(.so_rcvbuf), value: SocketOptionValue(receiveBuffer)) }
        let readGate = ReadGate()
        let channel = try await bootstrap
            .connect(host: "127.0.0.1", port: port) { ch in
                ch.eventLoop.makeCompletedFuture {
                    try ch.pipeline.syncOperations.addHandler(readGate)
                    try ch.pipeline.syncOperations.addHandler(NIOSSLClientHandler(context: context, serverHostname: nil))
                    try ch.pipeline.syncOperations.addHandler(ByteToMessageHandler(FrameDecoder()))
                    try ch.pipeline.syncOperations.addHandler(RawEncoder())
                    return try NIOAsyncChannel<Frame, RawOut>(wrappingChannelSynchronously: ch)
                }
            }
        let client = RawClient(channel: channel, readGate: readGate)
        let inbox = client.inbox
        Task {
            do {
                for try await frame in channel.inbound { await inbox.push(.frame(frame)) }
                await inbox.push(.closed(nil))
            } catch {
                await inbox.push(.closed("\(error)"))
            }
        }
        return client
    }

    func send(_ frame: Frame) async throws { try await channel.outbound.write(.frame(frame)) }
    func send(_ frames: [Frame]) async throws { try await channel.outbound.write(contentsOf: frames.map { .frame($0) }) }
    func sendBytes(_ bytes: [UInt8]) async throws { try await channel.outbound.write(.bytes(bytes)) }

    func next(timeout: Duration = .seconds(20)) async -> Inbox.Event? { await inbox.next(timeout: timeout) }

    /// Reads until a frame matches (skipping the others), or nil at close/timeout.
    func expect(timeout: Duration = .seconds(20), _ matches: (Frame) -> Bool) async -> Frame? {
        let deadline = ContinuousClock.now + timeout
        while ContinuousClock.now < deadline {
            guard let event = await next(timeout: deadline - ContinuousClock.now) else { return nil }
            switch event {
            case .frame(let f): if matches(f) { return f }
            case .closed: return nil
            }
        }
        return nil
    }

    /// Reads frames until the connection closes; returns them, or nil on timeout.
    func drainUntilClosed(timeout: Duration = .seconds(20)) async -> [Frame]? {
        var frames: [Frame] = []
        let deadline = ContinuousClock.now + timeout
        while ContinuousClock.now < deadline {
            guard let event = await next(timeout: deadline - ContinuousClock.now) else { return nil }
            switch event {
            case .frame(let f): frames.append(f)
            case .closed: return frames
            }
        }
        return nil
    }

    var history: [Inbox.Event] { get async { await inbox.history } }

    /// HELLO → CHALLENGE → PROOF with `key`; returns the answer (WELCOME or ERROR).
    func handshake(key: [UInt8] = TestKeys.key) async throws -> Frame {
        let nonce = PassphraseProof.nonce()
        try await send(.hello(Frame.Hello(minVersion: 1, maxVersion: 1, nonce: nonce, senderName: "raw-test")))
        let first = await expect { if case .heartbeat = $0 { false } else { true } }
        guard case .challenge(let challenge)? = first else { throw TestFailure("expected CHALLENGE, got \(String(describing: first))") }
        try await send(.proof(mac: PassphraseProof.senderMAC(key: key, senderNonce: nonce, masterNonce: challenge.nonce)))
        guard let answer = await expect({ if case .heartbeat = $0 { false } else { true } }) else { throw TestFailure("no answer to PROOF") }
        if case .welcome(let mac, _, _) = answer {
            #expect(mac == PassphraseProof.masterMAC(key: key, senderNonce: nonce, masterNonce: challenge.nonce))
        }
        return answer
    }

    /// A handshake that must succeed.
    func authenticate() async throws {
        let answer = try await handshake()
        guard case .welcome = answer else { throw TestFailure("handshake failed: \(answer)") }
    }

    /// OPEN_PAIR; returns PAIR_STATE or PAIR_ERROR for the handle.
    func open(_ handle: UInt32, pairID: String, group: String = "g1", target: String, sourceSize: UInt64) async throws -> Frame {
        try await send(.openPair(Frame.OpenPair(handle: handle, pairID: pairID, groupID: group, target: target, sourceSize: sourceSize)))
        guard let answer = await expect({ f in
            switch f {
            case .pairState(let s): s.handle == handle
            case .pairError(let h, _, _): h == handle
            default: false
            }
        }) else { throw TestFailure("no answer to OPEN_PAIR \(pairID)") }
        return answer
    }

    /// HASH_REQUEST as a barrier: the server answers it after everything queued before it on the pair.
    func barrier(_ handle: UInt32) async throws -> Bool {
        try await send(.hashRequest(handle: handle, offset: 0, chunkSize: 4096, count: 1))
        return await expect { if case .hashes(let h) = $0 { h.handle == handle } else { false } } != nil
    }

    /// Waits for an ACK of `handle` covering `seq`.
    func expectAck(_ handle: UInt32, atLeast seq: UInt64, timeout: Duration = .seconds(20)) async -> Bool {
        await expect(timeout: timeout) { if case .ack(let h, let d) = $0 { h == handle && d >= seq } else { false } } != nil
    }

    func close() {
        channel.outbound.finish()
        channel.channel.close(promise: nil)
    }
}

// MARK: - Bystander

/// A pair replicating through a real SenderSession on its own connection while a test does
/// something hostile on another: `start` sends the first half (left unacked behind a slow
/// target), `finish` the second half and a tag, waits until all is durable and checks the target.
struct Bystander {
    static let chunk = 64 << 10
    static let count = 16
    let session: SenderSession
    let pair: MemoryPair
    let expected: [UInt8]

    static func add(to store: MemoryStore) -> MemoryPair {
        let pair = store.add("bystander-target", size: chunk * count)
        pair.setApplyDelay(.milliseconds(5))
        return pair
    }

    static func start(_ server: TestServer, pair: MemoryPair) async throws -> Bystander {
        let session = server.sender([PairSpec(pairID: "bystander", group: "g-bystander", target: "bystander-target", sourceSize: UInt64(chunk * count))])
        try await session.connect(retryFor: .seconds(5))
        var expected = [UInt8]()
        for i in 0..<count { expected += pattern(chunk, seed: UInt8(i)) }
        let b = Bystander(session: session, pair: pair, expected: expected)
        for i in 0..<(count / 2) { try await b.write(i) }
        return b
    }

    private func write(_ i: Int) async throws {
        try await session.sendWrite(1, offset: UInt64(i * Self.chunk), data: buffer(Array(expected[(i * Self.chunk)..<((i + 1) * Self.chunk)])))
    }

    func finish() async throws {
        for i in (Self.count / 2)..<Self.count { try await write(i) }
        try await session.sendTag(1, tagID: 1, kind: .crash, name: "bystander-tag", sourceTime: 1)
        try await session.waitDurable(1)
        let seqs = UInt64(Self.count + 1)
        #expect(await session.durableSeq(1) == seqs)
        #expect(await session.stats.reconnects == 0)
        #expect(digest(pair.bytes) == digest(expected), "the bystander's target must hold exactly what it sent")
        #expect(pair.applied.map(\.seq) == Array(1...seqs), "the bystander's ops must all be applied, once, in order")
        #expect(pair.record.state == .inSync)
        await session.close()
    }
}

// MARK: - Files

struct TempDir {
    let path: String
    init() throws {
        var template = Array("/tmp/mt-srvtest-src-XXXXXX".utf8CString)
        guard let made = template.withUnsafeMutableBufferPointer({ mkdtemp($0.baseAddress!) }) else {
            throw TestFailure("mkdtemp failed")
        }
        path = String(cString: made)
    }
    func remove() { _ = try? ProcessRunner().run(["rm", "-rf", path]) }
}

func writeFile(_ path: String, _ bytes: [UInt8]) throws {
    guard let f = fopen(path, "w") else { throw TestFailure("cannot create \(path)") }
    defer { fclose(f) }
    guard fwrite(bytes, 1, bytes.count, f) == bytes.count else { throw TestFailure("short write to \(path)") }
}
