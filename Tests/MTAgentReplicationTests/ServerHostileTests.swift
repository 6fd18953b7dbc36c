import MTAgentCore
@testable import MTAgentReplication
import NIOCore
import Testing

// Connection-level violations (docs/PROTOCOL.md §2, §3, §9): each ends the offending connection
// with one ERROR and a close, and nothing else: another connection's pair, replicating through a
// real SenderSession at the same moment, completes with its data intact.

enum HostileSequence: String, CaseIterable, Sendable, CustomTestStringConvertible {
    case writeBeforeHello
    case openPairBeforeHello
    case proofBeforeHello
    case secondHelloBeforeProof
    case oversizedLength
    case zeroLength
    case unknownType
    case malformedHello
    case malformedAfterWelcome
    case secondHelloAfterWelcome
    case proofAfterWelcome
    case writeForUnopenedHandle
    case masterFrameFromSender

    var testDescription: String { rawValue }

    var expected: ErrorCode {
        switch self {
        case .writeBeforeHello, .openPairBeforeHello, .proofBeforeHello, .secondHelloBeforeProof: .notAuthenticated
        case .oversizedLength, .zeroLength: .frameTooLarge
        case .unknownType, .malformedHello, .malformedAfterWelcome: .malformedFrame
        case .secondHelloAfterWelcome, .proofAfterWelcome, .writeForUnopenedHandle, .masterFrameFromSender: .unexpectedFrame
        }
    }

    static let hello = Frame.hello(Frame.Hello(minVersion: 1, maxVersion: 1, nonce: Array(repeating: 7, count: 32), senderName: "hostile"))

    /// Sends the sequence (after whatever setup it needs; setup answers are consumed here).
    func perform(_ raw: RawClient) async throws {
        switch self {
        case .writeBeforeHello:
            try await raw.send(writeFrame(1, seq: 1, offset: 0, pattern(64, seed: 1)))  // small: a larger one is frame-too-large before WELCOME
        case .openPairBeforeHello:
            try await raw.send(.openPair(Frame.OpenPair(handle: 1, pairID: "hostile", groupID: "g", target: "hostile-target", sourceSize: 4096)))
        case .proofBeforeHello:
            try await raw.send(.proof(mac: Array(repeating: 0, count: 32)))
        case .secondHelloBeforeProof:
            try await raw.send(Self.hello)
            guard case .frame(.challenge)? = await raw.next() else { throw TestFailure("no CHALLENGE") }
            try await raw.send(Self.hello)
        case .oversizedLength:
            // A 0xFFFFFFFF length, then a valid frame the server must not read.
            var heartbeat = ByteBuffer()
            Frame.heartbeat(unixMillis: 1).encode(into: &heartbeat)
            try await raw.sendBytes([0xFF, 0xFF, 0xFF, 0xFF, 0x20] + Array(heartbeat.readableBytesView))
        case .zeroLength:
            try await raw.sendBytes([0, 0, 0, 0])
        case .unknownType:
            try await raw.sendBytes([0, 0, 0, 1, 0x7F])
        case .malformedHello:
            // A HELLO with one byte left over after its last field.
            var b = ByteBuffer()
            Self.hello.encode(into: &b)
            var bytes = Array(b.readableBytesView) + [0]
            let length = UInt32(bytes.count - 4)
            bytes.replaceSubrange(0..<4, with: [UInt8(length >> 24), UInt8(length >> 16 & 0xFF), UInt8(length >> 8 & 0xFF), UInt8(length & 0xFF)])
            try await raw.sendBytes(bytes)
        case .malformedAfterWelcome:
            try await raw.authenticate()
            // HEARTBEAT with a 7-byte body (a u64 needs 8).
            try await raw.sendBytes([0, 0, 0, 8, 0x06, 1, 2, 3, 4, 5, 6, 7])
        case .secondHelloAfterWelcome:
            try await raw.authenticate()
            try await raw.send(Self.hello)
        case .proofAfterWelcome:
            try await raw.authenticate()
            try await raw.send(.proof(mac: Array(repeating: 0, count: 32)))
        case .writeForUnopenedHandle:
            try await raw.authenticate()
            try await raw.send(writeFrame(9, seq: 1, offset: 0, pattern(4096, seed: 9)))
        case .masterFrameFromSender:
            try await raw.authenticate()
            try await raw.send(.ack(handle: 1, durableSeq: 1))
        }
    }
}

@Suite(.timeLimit(.minutes(1)))
struct ServerHostileTests {
    @Test(arguments: HostileSequence.allCases)
    func violationClosesOnlyThatConnection(_ sequence: HostileSequence) async throws {
        let store = MemoryStore()
        let bystanderPair = Bystander.add(to: store)
        store.add("hostile-target", size: 1 << 20)
        try await withServer(store) { server in
            let bystander = try await Bystander.start(server, pair: bystanderPair)

            let raw = try await server.raw()
            try await sequence.perform(raw)
            let frames = await raw.drainUntilClosed()
            guard let frames else {
                let history = await raw.history
                Issue.record("the server did not close the connection after \(sequence); received \(history)")
                raw.close()
                return
            }
            #expect(frames.count == 1, "exactly one ERROR, then the close: \(frames)")
            guard case .error(let code, let message)? = frames.first else {
                Issue.record("expected ERROR \(sequence.expected), got \(frames)")
                return
            }
            #expect(code == sequence.expected, "\(message)")
            #expect(!message.isEmpty)
            #expect(!store.opens.contains { $0.pairID == "hostile" }, "a pair must not be opened before WELCOME")

            try await bystander.finish()

            // The service still accepts and serves new connections.
            let next = try await server.raw()
            try await next.authenticate()
            guard case .pairState = try await next.open(1, pairID: "after", target: "hostile-target", sourceSize: 1 << 20) else {
                Issue.record("a new connection after \(sequence) could not open a pair")
                return
            }
            next.close()
        }
    }

    @Test func unsupportedVersionNamesTheVersionsSpoken() async throws {
        try await withServer(MemoryStore()) { server in
            let raw = try await server.raw()
            try await raw.send(.hello(Frame.Hello(minVersion: 2, maxVersion: 5, nonce: Array(repeating: 1, count: 32), senderName: "future")))
            let frames = await raw.drainUntilClosed()
            guard case .error(.unsupportedVersion, let message)? = frames?.first, frames?.count == 1 else {
                Issue.record("expected ERROR unsupported-version then close, got \(String(describing: frames))")
                return
            }
            #expect(message.contains("1"))
        }
    }

    @Test func silentPeerGetsHeartbeatsThenATimeout() async throws {
        // §8: HEARTBEAT after heartbeatMillis without sending; ERROR timeout and close after 3×
        // that without receiving.
        try await withServer(MemoryStore(), heartbeat: .seconds(1)) { server in
            let raw = try await server.raw()
            let start = ContinuousClock.now
            let answer = try await raw.handshake()
            guard case .welcome(_, let heartbeatMillis, let maxWrite) = answer else { Issue.record("handshake: \(answer)"); return }
            #expect(heartbeatMillis == 1000)
            #expect(maxWrite == UInt32(FrameLimits.maxWriteData))
            let frames = await raw.drainUntilClosed(timeout: .seconds(20))
            let elapsed = ContinuousClock.now - start
            guard let frames else { Issue.record("a silent peer was never disconnected"); return }
            #expect(frames.contains { if case .heartbeat = $0 { true } else { false } }, "\(frames)")
            guard case .error(.timeout, _)? = frames.last else { Issue.record("expected ERROR timeout last, got \(frames)"); return }
            #expect(elapsed >= .milliseconds(2900), "closed after \(elapsed), before 3 heartbeat intervals")
        }
    }
}
