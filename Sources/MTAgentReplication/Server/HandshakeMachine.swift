/// The master target's side of the handshake (docs/PROTOCOL.md §3) as a state machine without
/// I/O, so the connection and the fuzzer (`HandshakeFuzz`) run the same rules: HEARTBEAT at any
/// time, then HELLO, then PROOF; nothing reaches the pairs before the proof has been checked and
/// found right.
public struct HandshakeMachine: Sendable {
    public enum State: Sendable, Equatable {
        case awaitingHello
        case awaitingProof(senderNonce: [UInt8], masterNonce: [UInt8])
        case checkingProof
        case authenticated
        /// A refusal was returned: the connection closes, nothing more is read.
        case closed
    }

    /// What the connection does with a frame it received.
    public enum Action: Sendable, Equatable {
        /// Nothing (a HEARTBEAT).
        case none
        /// Send CHALLENGE with this nonce.
        case challenge(masterNonce: [UInt8])
        /// Check `mac` against the expected proof for these nonces, then report with `proofChecked`.
        case checkProof(mac: [UInt8], senderNonce: [UInt8], masterNonce: [UInt8])
        /// After WELCOME: the frame is for the connection's pairs.
        case deliver(Frame)
        /// Send ERROR with this code and close.
        case refuse(ErrorCode, String)
    }

    public private(set) var state = State.awaitingHello
    let makeNonce: @Sendable () -> [UInt8]

    public init(makeNonce: @escaping @Sendable () -> [UInt8] = PassphraseProof.nonce) {
        self.makeNonce = makeNonce
    }

    public var isAuthenticated: Bool { state == .authenticated }

    public mutating func receive(_ frame: Frame) -> Action {
        if case .heartbeat = frame, state != .closed { return .none }  // allowed at any time, also while the proof is checked
        switch state {
        case .awaitingHello:
            guard case .hello(let hello) = frame else { return refuse(.notAuthenticated, "expected HELLO, got frame type 0x\(String(frame.type, radix: 16))") }
            guard hello.minVersion <= PassphraseProof.version, PassphraseProof.version <= hello.maxVersion else {
                return refuse(.unsupportedVersion, "this master target speaks protocol version \(PassphraseProof.version) only; the sender offered \(hello.minVersion)...\(hello.maxVersion)")
            }
            let nonce = makeNonce()
            state = .awaitingProof(senderNonce: hello.nonce, masterNonce: nonce)
            return .challenge(masterNonce: nonce)
        case .awaitingProof(let senderNonce, let masterNonce):
            guard case .proof(let mac) = frame else { return refuse(.notAuthenticated, "expected PROOF, got frame type 0x\(String(frame.type, radix: 16))") }
            state = .checkingProof
            return .checkProof(mac: mac, senderNonce: senderNonce, masterNonce: masterNonce)
        case .checkingProof:
            return refuse(.notAuthenticated, "frame type 0x\(String(frame.type, radix: 16)) before the proof was answered")
        case .authenticated:
            return .deliver(frame)
        case .closed:
            return .refuse(.unexpectedFrame, "frame after the connection was refused")
        }
    }

    /// The result of the check `.checkProof` asked for: nil when right (send WELCOME), else the refusal.
    public mutating func proofChecked(_ right: Bool) -> Action? {
        guard state == .checkingProof else { return refuse(.unexpectedFrame, "no proof was being checked") }
        guard right else {
            return refuse(.authFailed, "the passphrase proof did not verify: the sender's passphrase differs from the one set on this master target")
        }
        state = .authenticated
        return nil
    }

    private mutating func refuse(_ code: ErrorCode, _ message: String) -> Action {
        state = .closed
        return .refuse(code, message)
    }
}
