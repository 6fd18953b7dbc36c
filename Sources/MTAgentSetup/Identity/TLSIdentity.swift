import Crypto
import FoundationEssentials
import Glibc
import MTAgentCore
import MTAgentLinux
import X509

/// The master target's TLS identity: a P-256 key and a self-signed certificate. Senders do not
/// validate a chain; they pin the SHA-256 fingerprint of the certificate's DER, which setup prints.
public struct TLSIdentity: Sendable, Equatable {
    public var certificateDER: [UInt8]
    /// `AB:CD:…`, 32 colon-separated uppercase hex bytes of SHA-256 over `certificateDER` — the
    /// form `openssl x509 -noout -fingerprint -sha256` prints.
    public var fingerprint: String
    public var certificatePEM: String
    /// PKCS#8 PEM (`BEGIN PRIVATE KEY`), as swift-nio-ssl and openssl read it.
    public var privateKeyPEM: String

    /// Ten years: the certificate is pinned, not validated, so expiry only forces an admin to
    /// re-pin; it should not happen during the life of a master target.
    public static let validity: TimeInterval = 10 * 365.25 * 24 * 3600

    /// Makes a new key and a certificate for `hostname` (subject CN and DNS SAN) and `addresses`
    /// (IP SANs, IPv4 or IPv6 text), valid from an hour before `now` to absorb clock skew.
    public static func generate(hostname: String, addresses: [String] = [], now: Date = Date()) throws -> TLSIdentity {
        let key = P256.Signing.PrivateKey()
        let certKey = Certificate.PrivateKey(key)
        let name = try DistinguishedName { CommonName(hostname) }
        var sans: [GeneralName] = [.dnsName(hostname)]
        for address in addresses {
            if let bytes = ipAddressBytes(address) { sans.append(.ipAddress(.init(contentBytes: bytes[...]))) }
        }
        let extensions = try Certificate.Extensions {
            Critical(BasicConstraints.notCertificateAuthority)
            Critical(KeyUsage(digitalSignature: true))
            try ExtendedKeyUsage([.serverAuth])
            SubjectAlternativeNames(sans)
            SubjectKeyIdentifier(keyIdentifier: ArraySlice(Insecure.SHA1.hash(data: key.publicKey.x963Representation)))
        }
        let certificate = try Certificate(
            version: .v3,
            serialNumber: Certificate.SerialNumber(),
            publicKey: certKey.publicKey,
            notValidBefore: now.addingTimeInterval(-3600),
            notValidAfter: now.addingTimeInterval(validity),
            issuer: name,
            subject: name,
            signatureAlgorithm: .ecdsaWithSHA256,
            extensions: extensions,
            issuerPrivateKey: certKey
        )
        let pem = try certificate.serializeAsPEM()
        return TLSIdentity(
            certificateDER: pem.derBytes,
            fingerprint: fingerprint(of: pem.derBytes),
            certificatePEM: pem.pemString + "\n",
            privateKeyPEM: key.pemRepresentation + "\n"
        )
    }

    /// Parses both PEM files and checks that the key is the certificate's.
    public static func parse(certificatePEM: String, privateKeyPEM: String) throws -> TLSIdentity {
        let certificate: Certificate
        do {
            certificate = try Certificate(pemEncoded: certificatePEM)
        } catch {
            throw TLSIdentityError.unreadable(AgentPaths.tlsCertificate, "not a PEM X.509 certificate")
        }
        let key: Certificate.PrivateKey
        do {
            key = try Certificate.PrivateKey(pemEncoded: privateKeyPEM)
        } catch {
            throw TLSIdentityError.unreadable(AgentPaths.tlsKey, "not a PEM private key")
        }
        guard key.publicKey == certificate.publicKey else { throw TLSIdentityError.keyMismatch }
        let der = try certificate.serializeAsPEM().derBytes
        return TLSIdentity(
            certificateDER: der, fingerprint: fingerprint(of: der),
            certificatePEM: certificatePEM, privateKeyPEM: privateKeyPEM
        )
    }

    /// Loads and verifies the identity setup wrote, for `preflight` and `serve`.
    public static func load(from system: SystemFiles, certificatePath: String = AgentPaths.tlsCertificate, keyPath: String = AgentPaths.tlsKey) throws -> TLSIdentity {
        guard let cert = system.read(certificatePath) else { throw TLSIdentityError.missing(certificatePath) }
        guard let key = system.read(keyPath) else { throw TLSIdentityError.missing(keyPath) }
        do {
            return try parse(certificatePEM: String(decoding: cert, as: UTF8.self), privateKeyPEM: String(decoding: key, as: UTF8.self))
        } catch TLSIdentityError.unreadable(let path, let why) {
            throw TLSIdentityError.unreadable(path == AgentPaths.tlsKey ? keyPath : certificatePath, why)
        }
    }

    /// `load(from:)` under a system root directory (`/` live).
    public static func load(root: String) throws -> TLSIdentity {
        try load(from: RootedFiles(root: root))
    }

    /// SHA-256 of `der` as `AB:CD:…`.
    public static func fingerprint(of der: [UInt8]) -> String {
        SHA256.hash(data: der).map { hexByte($0) }.joined(separator: ":")
    }

    /// A fingerprint as an admin may paste it (any case, with or without colons), normalised to
    /// `AB:CD:…`; nil when it is not 32 hex bytes. For the sender's `--fingerprint`.
    public static func normalizeFingerprint(_ text: String) -> String? {
        let hex = text.filter { $0 != ":" && !$0.isWhitespace }.uppercased()
        guard hex.count == 64, hex.allSatisfy(\.isHexDigit) else { return nil }
        var pairs: [String] = []
        var i = hex.startIndex
        while i < hex.endIndex {
            let j = hex.index(i, offsetBy: 2)
            pairs.append(String(hex[i..<j]))
            i = j
        }
        return pairs.joined(separator: ":")
    }

    static func hexByte(_ b: UInt8) -> String {
        let digits = Array("0123456789ABCDEF")
        return String([digits[Int(b >> 4)], digits[Int(b & 0xF)]])
    }

    static func ipAddressBytes(_ text: String) -> [UInt8]? {
        var v4 = in_addr()
        if inet_pton(AF_INET, text, &v4) == 1 {
            return withUnsafeBytes(of: &v4) { Array($0) }
        }
        var v6 = in6_addr()
        if inet_pton(AF_INET6, text, &v6) == 1 {
            return withUnsafeBytes(of: &v6) { Array($0) }
        }
        return nil
    }
}

public enum TLSIdentityError: Error, Equatable, CustomStringConvertible {
    case missing(String)
    case unreadable(String, String)
    case keyMismatch

    public var description: String {
        switch self {
        case .missing(let path): "\(path) is missing; run `mt-agent setup` to create the TLS identity"
        case .unreadable(let path, let why): "\(path): \(why)"
        case .keyMismatch:
            "\(AgentPaths.tlsKey) is not the key of \(AgentPaths.tlsCertificate); remove both and run `mt-agent setup` (the fingerprint will change: re-pin it on the senders)"
        }
    }
}

/// The machine's name and addresses, read under the system root so fixture machines work.
public enum HostIdentity {
    /// The kernel's hostname, else `/etc/hostname`, else `localhost`.
    public static func hostname(_ system: SystemFiles) -> String {
        if let name = HostFacts(files: system).hostname { return name }
        if let name = system.text("/etc/hostname")?.split(whereSeparator: \.isWhitespace).first { return String(name) }
        return "localhost"
    }

    /// Every non-loopback unicast address of the machine (`HostFacts.addresses`), sorted.
    public static func addresses(_ system: SystemFiles) -> [String] {
        HostFacts(files: system).addresses.sorted()
    }
}
