import NIOCore

/// The fuzz check of the master target's connection start: the bytes are what a peer sends; they
/// are decoded as the server decodes them (at most `FrameLimits.maxHandshakeFrameLength` per frame
/// until WELCOME, the full limit after) and fed to `HandshakeMachine`. A PROOF counts as right when
/// its first byte is even, so inputs reach both answers. Shared by `mt-agent-frame-fuzzer` and
/// the corpus replay test. Invariants:
/// - no frame is delivered to the pairs before a proof was checked and found right, and none after
///   a refusal;
/// - before WELCOME no frame longer than the handshake limit is decoded, and a longer header is
///   refused as frame-too-large naming that limit;
/// - a proof is only checked after HELLO was answered with CHALLENGE, and only once.
public enum HandshakeFuzz {
    public struct Violation: Error, CustomStringConvertible {
        public var description: String
    }

    /// What the peer got: frames delivered after WELCOME, and how the connection ended (nil: the
    /// input ended with the connection open).
    public struct Outcome: Sendable, Equatable {
        public var authenticated: Bool
        public var delivered: Int
        public var refusal: ErrorCode?

        public init(authenticated: Bool, delivered: Int, refusal: ErrorCode?) {
            self.authenticated = authenticated
            self.delivered = delivered
            self.refusal = refusal
        }
    }

    public static func check(_ bytes: [UInt8]) -> Outcome {
        do {
            return try verify(bytes)
        } catch {
            fatalError("handshake: \(error.description)")
        }
    }

    public static func verify(_ bytes: [UInt8]) throws(Violation) -> Outcome {
        let limit = FrameLengthLimit(FrameLimits.maxHandshakeFrameLength)
        var decoder = FrameDecoder(limit: limit)
        var machine = HandshakeMachine(makeNonce: { [UInt8](repeating: 0x5A, count: 32) })
        var buffer = ByteBuffer(bytes: bytes)
        var outcome = Outcome(authenticated: false, delivered: 0, refusal: nil)
        var challenged = false
        var proofsChecked = 0
        while outcome.refusal == nil {
            let start = buffer.readerIndex
            let frame: Frame
            do {
                guard let f = try decoder.decodeOne(&buffer) else { break }
                frame = f
            } catch let error as FrameError {
                if case .tooLarge(let length, let max) = error {
                    let expected = machine.isAuthenticated ? FrameLimits.maxFrameLength : FrameLimits.maxHandshakeFrameLength
                    guard max == expected, Int(length) > max else {
                        throw Violation(description: "length \(length) refused against \(max); the limit in force is \(expected)")
                    }
                }
                outcome.refusal = error.code
                break
            } catch {
                throw Violation(description: "the decoder threw \(error), which is not a FrameError")
            }
            let length = buffer.readerIndex - start - 4
            if !machine.isAuthenticated, length > FrameLimits.maxHandshakeFrameLength {
                throw Violation(description: "a \(length)-byte frame was decoded before WELCOME")
            }
            let wasAuthenticated = machine.isAuthenticated
            switch machine.receive(frame) {
            case .none:
                guard case .heartbeat = frame else { throw Violation(description: "\(frame.type) ignored") }
            case .challenge:
                guard case .hello = frame, !challenged else { throw Violation(description: "CHALLENGE for frame type \(frame.type), or twice") }
                challenged = true
            case .checkProof(let mac, _, _):
                guard challenged, proofsChecked == 0, case .proof = frame else {
                    throw Violation(description: "a proof checked before CHALLENGE, or twice")
                }
                proofsChecked += 1
                if let refusal = machine.proofChecked(mac.first.map { $0 & 1 == 0 } ?? false) {
                    guard case .refuse(let code, _) = refusal, code == .authFailed else { throw Violation(description: "a wrong proof answered \(refusal)") }
                    outcome.refusal = code
                } else {
                    guard machine.isAuthenticated else { throw Violation(description: "a right proof did not authenticate") }
                    limit.raise(to: FrameLimits.maxFrameLength)
                    outcome.authenticated = true
                }
            case .deliver:
                guard wasAuthenticated, proofsChecked == 1 else { throw Violation(description: "frame type \(frame.type) delivered before WELCOME") }
                outcome.delivered += 1
            case .refuse(let code, _):
                guard !wasAuthenticated else { throw Violation(description: "refused \(code) after WELCOME") }
                outcome.refusal = code
            }
        }
        return outcome
    }
}
