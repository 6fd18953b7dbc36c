import Crypto
import NIOConcurrencyHelpers
import NIOCore

/// The mutual passphrase proof of docs/PROTOCOL.md §3.2: HMAC-SHA-256 with the scrypt-derived key,
/// bound to both sides' nonces. The sender proves first.
public enum PassphraseProof {
    public static let version: UInt16 = 1
    static let senderLabel = Array("mt-agent/1 sender".utf8)
    static let masterLabel = Array("mt-agent/1 master-target".utf8)

    /// 32 bytes from the system's CSPRNG.
    public static func nonce() -> [UInt8] {
        var rng = SystemRandomNumberGenerator()
        return (0..<32).map { _ in UInt8.random(in: .min ... .max, using: &rng) }
    }

    public static func senderMAC(key: [UInt8], senderNonce: [UInt8], masterNonce: [UInt8]) -> [UInt8] {
        Array(HMAC<SHA256>.authenticationCode(for: senderLabel + senderNonce + masterNonce, using: SymmetricKey(data: key)))
    }

    public static func masterMAC(key: [UInt8], senderNonce: [UInt8], masterNonce: [UInt8]) -> [UInt8] {
        Array(HMAC<SHA256>.authenticationCode(for: masterLabel + masterNonce + senderNonce, using: SymmetricKey(data: key)))
    }

    /// Constant-time comparison of a peer's MAC.
    static func verify(_ mac: [UInt8], expected: [UInt8]) -> Bool {
        guard mac.count == expected.count else { return false }
        var diff: UInt8 = 0
        for (a, b) in zip(mac, expected) { diff |= a ^ b }
        return diff == 0
    }
}

/// What the MT knows of the passphrase: the derived key and how it was derived (sent to senders
/// in CHALLENGE so they derive the same key).
public struct MasterCredentials: Sendable {
    public var key: [UInt8]
    public var salt: [UInt8]
    public var n: UInt64
    public var r: UInt32
    public var p: UInt32
    public init(key: [UInt8], salt: [UInt8], n: UInt64, r: UInt32, p: UInt32) {
        self.key = key; self.salt = salt; self.n = n; self.r = r; self.p = p
    }
}

/// Slows down repeated passphrase failures from one address: after the 3rd consecutive failure
/// within 10 minutes each further attempt waits 1 s, doubling per failure up to 30 s. A success
/// clears the address.
public final class AuthThrottle: Sendable {
    struct Record { var failures: Int; var last: NIODeadline }
    private let records = NIOLockedValueBox([String: Record]())
    let window = TimeAmount.minutes(10)

    public init() {}

    /// How long to hold the answer to `address`'s next attempt.
    public func delay(for address: String, now: NIODeadline = .now()) -> TimeAmount {
        records.withLockedValue { records in
            guard let r = records[address], now - r.last < window, r.failures >= 3 else { return .zero }
            let seconds = min(30, 1 << min(r.failures - 3, 5))
            return .seconds(Int64(seconds))
        }
    }

    public func failed(_ address: String, now: NIODeadline = .now()) -> Int {
        records.withLockedValue { records in
            var r = records[address] ?? Record(failures: 0, last: now)
            if now - r.last >= window { r.failures = 0 }
            r.failures += 1
            r.last = now
            records[address] = r
            // Keep the table bounded: forget addresses quiet for a whole window.
            if records.count > 4096 { records = records.filter { now - $0.value.last < window } }
            return r.failures
        }
    }

    public func succeeded(_ address: String) {
        _ = records.withLockedValue { $0.removeValue(forKey: address) }
    }
}
