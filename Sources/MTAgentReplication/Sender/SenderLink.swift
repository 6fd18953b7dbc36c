import Glibc
import Crypto
import Logging
import MTAgentCore
import NIOConcurrencyHelpers
import NIOCore
import NIOPosix
import NIOSSL

/// How the sender reaches and proves itself to a master target.
public struct SenderConfiguration: Sendable {
    public var host: String
    public var port: Int
    /// SHA-256 of the MT certificate's DER, as 64 lowercase hex digits.
    public var fingerprint: String
    public var senderName: String
    /// scrypt of the passphrase with the MT's salt and parameters (from CHALLENGE).
    public var deriveKey: @Sendable (_ salt: [UInt8], _ n: UInt64, _ r: UInt32, _ p: UInt32) throws -> [UInt8]
    public var heartbeat: TimeAmount = .seconds(5)

    public init(host: String, port: Int, fingerprint: String, senderName: String,
                deriveKey: @escaping @Sendable ([UInt8], UInt64, UInt32, UInt32) throws -> [UInt8]) {
        self.host = host; self.port = port; self.fingerprint = fingerprint; self.senderName = senderName; self.deriveKey = deriveKey
    }
}

/// Why a connection attempt or a connection failed.
public enum LinkError: Error, Equatable, CustomStringConvertible {
    /// The MT presented a certificate whose fingerprint is not the pinned one. Never retried.
    case fingerprintMismatch(presented: String, expected: String)
    /// The MT refused the passphrase proof, or could not prove it knows the passphrase. Never retried.
    case authentication(String)
    /// The MT sent ERROR (connection-level).
    case remote(code: ErrorCode, message: String)
    /// The connection ended or could not be made; worth a retry.
    case lost(String)

    public var isRetryable: Bool {
        switch self {
        case .lost: true
        case .remote(let code, _): code == .shuttingDown || code == .timeout
        case .fingerprintMismatch, .authentication: false
        }
    }

    public var description: String {
        switch self {
        case .fingerprintMismatch(let presented, let expected):
            "the master target presented certificate fingerprint \(presented), not the pinned \(expected): refusing to send (check --fingerprint against `mt-agent setup` on the MT)"
        case .authentication(let m): m
        case .remote(let code, let message): "the master target closed the connection: \(code): \(message)"
        case .lost(let m): "connection lost: \(m)"
        }
    }
}

/// One authenticated TLS connection to the MT.
struct SenderLink {
    let channel: NIOAsyncChannel<Frame, Frame>

    /// Connects, checks the pinned fingerprint, and runs the handshake on `inbound`, the
    /// connection's only iterator, which the caller goes on reading after WELCOME.
    static func connect(_ config: SenderConfiguration, group: any EventLoopGroup, logger: Logger) async throws
        -> (SenderLink, NIOAsyncChannelInboundStream<Frame>.AsyncIterator) {
        var tls = TLSConfiguration.makeClientConfiguration()
        tls.minimumTLSVersion = .tlsv13
        tls.certificateVerification = .noHostnameVerification
        let context = try NIOSSLContext(configuration: tls)
        let expected = config.fingerprint
        let presented = NIOLockedValueBox<String?>(nil)
        let channel: NIOAsyncChannel<Frame, Frame>
        do {
            channel = try await ClientBootstrap(group: group)
                .channelOption(.tcpOption(.tcp_nodelay), value: 1)
                .connectTimeout(.seconds(10))
                .connect(host: config.host, port: config.port) { ch in
                    ch.eventLoop.makeCompletedFuture {
                        let handler = try NIOSSLClientHandler(context: context, serverHostname: nil) { certificates, promise in
                            // Pinning replaces CA verification: only the MT's own certificate is accepted.
                            guard let leaf = certificates.first, let der = try? leaf.toDERBytes() else {
                                promise.succeed(.failed)
                                return
                            }
                            let fp = SHA256.hash(data: der).map { String(format2: $0) }.joined()
                            presented.withLockedValue { $0 = fp }
                            promise.succeed(fp == expected ? .certificateVerified : .failed)
                        }
                        try ch.pipeline.syncOperations.addHandler(handler)
                        try ch.pipeline.syncOperations.addFrameCodec(heartbeat: config.heartbeat)
                        return try NIOAsyncChannel<Frame, Frame>(wrappingChannelSynchronously: ch)
                    }
                }
        } catch {
            throw LinkError.lost("cannot connect to \(config.host):\(config.port): \(Self.describe(error))")
        }
        let link = SenderLink(channel: channel)
        var inbound = channel.inbound.makeAsyncIterator()
        do {
            try await link.handshake(config, inbound: &inbound, logger: logger)
        } catch let error as LinkError {
            link.shutdown()
            throw error
        } catch {
            link.shutdown()
            if let fp = presented.withLockedValue({ $0 }), fp != expected {
                throw LinkError.fingerprintMismatch(presented: fp, expected: expected)
            }
            throw LinkError.lost("handshake with \(config.host):\(config.port): \(error)")
        }
        return (link, inbound)
    }

    /// The next frame that is not a HEARTBEAT (the MT may send some while it delays its answer).
    private static func next(_ inbound: inout NIOAsyncChannelInboundStream<Frame>.AsyncIterator) async throws -> Frame? {
        while let frame = try await inbound.next() {
            if case .heartbeat = frame { continue }
            return frame
        }
        return nil
    }

    /// "connection refused" rather than NIO's nested error dump.
    static func describe(_ error: Error) -> String {
        if let e = error as? NIOConnectionError {
            if let first = e.connectionErrors.first { return describe(first.error) }
            if let dns = e.dnsAError ?? e.dnsAAAAError { return "cannot resolve the host: \(dns)" }
        }
        if let e = error as? IOError { return String(cString: strerror(e.errnoCode)).lowercased() }
        return "\(error)"
    }

    /// Finishes the writer (NIO requires it before the channel is dropped) and closes.
    func shutdown() {
        channel.outbound.finish()
        channel.channel.close(promise: nil)
    }

    private func handshake(_ config: SenderConfiguration, inbound: inout NIOAsyncChannelInboundStream<Frame>.AsyncIterator,
                           logger: Logger) async throws {
        let nonce = PassphraseProof.nonce()
        try await channel.outbound.write(.hello(Frame.Hello(minVersion: 1, maxVersion: PassphraseProof.version, nonce: nonce, senderName: config.senderName)))
        guard let first = try await Self.next(&inbound) else { throw LinkError.lost("the master target closed the connection during the handshake") }
        let challenge: Frame.Challenge
        switch first {
        case .challenge(let c): challenge = c
        case .error(let code, let message): throw LinkError.remote(code: code, message: message)
        default: throw LinkError.lost("expected CHALLENGE, got frame type 0x\(String(first.type, radix: 16))")
        }
        guard challenge.kdf == "scrypt" else { throw LinkError.authentication("the master target asks for key derivation \(challenge.kdf), which this sender does not know") }
        // Checked before deriving: scrypt would hold 128 × n × r bytes, p times over.
        if let problem = ScryptBounds.problem(n: challenge.n, r: UInt64(challenge.r), p: UInt64(challenge.p)) {
            logger.error("refusing the master target's scrypt parameters", metadata: [
                "kdf.n": "\(challenge.n)", "kdf.r": "\(challenge.r)", "kdf.p": "\(challenge.p)", "server": "\(challenge.serverName)",
            ])
            throw LinkError.authentication("the master target asks for scrypt parameters outside the protocol's bounds (\(problem)); "
                                           + "an mt-agent master target never does: check --to and --fingerprint")
        }
        let key: [UInt8]
        do {
            key = try config.deriveKey(challenge.salt, challenge.n, challenge.r, challenge.p)
        } catch {
            throw LinkError.authentication("cannot derive the replication key with the master target's scrypt parameters: \(error)")
        }
        try await channel.outbound.write(.proof(mac: PassphraseProof.senderMAC(key: key, senderNonce: nonce, masterNonce: challenge.nonce)))
        guard let answer = try await Self.next(&inbound) else { throw LinkError.lost("the master target closed the connection during the handshake") }
        switch answer {
        case .welcome(let mac, _, _):
            guard PassphraseProof.verify(mac, expected: PassphraseProof.masterMAC(key: key, senderNonce: nonce, masterNonce: challenge.nonce)) else {
                throw LinkError.authentication("the master target's passphrase proof did not verify: it does not know the replication passphrase")
            }
        case .error(.authFailed, let message):
            throw LinkError.authentication("the master target refused the passphrase: \(message)")
        case .error(let code, let message):
            throw LinkError.remote(code: code, message: message)
        default:
            throw LinkError.lost("expected WELCOME, got frame type 0x\(String(answer.type, radix: 16))")
        }
        logger.debug("authenticated", metadata: ["server": "\(challenge.serverName)"])
    }
}

extension String {
    init(format2 byte: UInt8) {
        let digits = Array("0123456789abcdef")
        self = String([digits[Int(byte >> 4)], digits[Int(byte & 0xF)]])
    }
}
