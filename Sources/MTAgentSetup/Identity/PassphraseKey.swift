import Crypto
import Glibc
import MTAgentCore
import MTAgentLinux
import _CryptoExtras

/// The scrypt parameters a passphrase key was derived with; stored beside the key so a sender
/// (which has only the passphrase) can derive the same key from the MT's salt and parameters.
public struct KDFParameters: Sendable, Equatable, Codable {
    /// Only `scrypt` today; the field is stored so a later version can change the KDF.
    public var algorithm: String
    /// CPU/memory cost, a power of two. Memory used is 128 × n × r bytes.
    public var n: Int
    /// Block size.
    public var r: Int
    /// Parallelism.
    public var p: Int
    /// Derived key length in bytes.
    public var length: Int

    public init(algorithm: String = "scrypt", n: Int, r: Int, p: Int, length: Int = 32) {
        self.algorithm = algorithm
        self.n = n
        self.r = r
        self.p = p
        self.length = length
    }

    /// scrypt N = 2^17, r = 8, p = 1 (128 MiB, a fraction of a second): OWASP's current minimum
    /// for scrypt. The derivation runs once at setup and once per sender start, never per
    /// connection, so the cost falls only on someone guessing passphrases from a stolen key file.
    public static let standard = KDFParameters(n: 1 << 17, r: 8, p: 1, length: 32)

    /// Rejects parameters no honest setup writes: they would make a sender that derives with
    /// them spend unbounded memory or time, or yield a weak key.
    public func validate() throws {
        func bad(_ why: String) -> PassphraseError { .badParameters(why) }
        guard algorithm == "scrypt" else { throw bad("algorithm \"\(algorithm)\" is not supported (only scrypt)") }
        // The protocol's bounds (PROTOCOL.md §3.2): a sender refuses a CHALLENGE outside them.
        guard let n = UInt64(exactly: n), let r = UInt64(exactly: r), let p = UInt64(exactly: p) else {
            throw bad("n, r and p must not be negative")
        }
        if let problem = ScryptBounds.problem(n: n, r: r, p: p) { throw bad(problem) }
        guard (16...64).contains(length) else { throw bad("length = \(length) is outside 16…64 bytes") }
    }
}

/// The key both sides of a replication connection prove knowledge of (HMAC-SHA-256 over both
/// nonces). The MT stores only this, never the passphrase.
public struct PassphraseKey: Sendable, Equatable {
    public var parameters: KDFParameters
    public var salt: [UInt8]
    public var keyBytes: [UInt8]

    public static let saltLength = 16

    public var symmetricKey: SymmetricKey { SymmetricKey(data: keyBytes) }

    /// Derives the key from passphrase bytes. Deterministic for the same passphrase, salt and
    /// parameters — the sender calls this with the MT's salt and parameters.
    public static func derive(passphrase: [UInt8], salt: [UInt8], params: KDFParameters = .standard) throws -> PassphraseKey {
        try params.validate()
        guard !passphrase.isEmpty else { throw PassphraseError.emptyPassphrase }
        // The key file insists on saltLength bytes; here any salt goes, so the RFC 7914 vectors can be checked.
        guard !salt.isEmpty else { throw PassphraseError.badParameters("the salt is empty") }
        let key = try KDF.Scrypt.deriveKey(
            from: passphrase, salt: salt, outputByteCount: params.length,
            rounds: params.n, blockSize: params.r, parallelism: params.p
        )
        return PassphraseKey(parameters: params, salt: salt, keyBytes: key.withUnsafeBytes { Array($0) })
    }

    /// Derives a new key with a fresh random salt.
    public static func create(passphrase: [UInt8], params: KDFParameters = .standard) throws -> PassphraseKey {
        var rng = SystemRandomNumberGenerator()  // getrandom(2) on Linux
        let salt = (0..<saltLength).map { _ in UInt8.random(in: .min ... .max, using: &rng) }
        return try derive(passphrase: passphrase, salt: salt, params: params)
    }

    /// True when `passphrase` derives this key (with this key's salt and parameters).
    public func matches(passphrase: [UInt8]) throws -> Bool {
        try Self.derive(passphrase: passphrase, salt: salt, params: parameters) == self
    }

    /// HMAC-SHA-256 of `message` with this key.
    public func authenticationCode(for message: [UInt8]) -> [UInt8] {
        Array(HMAC<SHA256>.authenticationCode(for: message, using: symmetricKey))
    }

    /// Constant-time check of a peer's HMAC-SHA-256.
    public func isValidAuthenticationCode(_ code: [UInt8], for message: [UInt8]) -> Bool {
        HMAC<SHA256>.isValidAuthenticationCode(code, authenticating: message, using: symmetricKey)
    }

    /// Compares in constant time, so tests and `matches` leak nothing through timing.
    public static func == (a: PassphraseKey, b: PassphraseKey) -> Bool {
        guard a.parameters == b.parameters, a.salt == b.salt, a.keyBytes.count == b.keyBytes.count else { return false }
        var diff: UInt8 = 0
        for (x, y) in zip(a.keyBytes, b.keyBytes) { diff |= x ^ y }
        return diff == 0
    }

    // MARK: - The key file

    /// The content of `/etc/mt-agent/passphrase.key`.
    public func render() -> String {
        """
        # mt-agent passphrase key, written by `mt-agent setup --passphrase-file`. It holds a key
        # derived from the replication passphrase by \(parameters.algorithm); the passphrase itself is
        # not stored. Keep this file mode 0600. To change the passphrase, run setup again with the new
        # --passphrase-file and give the senders the new passphrase.
        format = 1
        algorithm = \(parameters.algorithm)
        n = \(parameters.n)
        r = \(parameters.r)
        p = \(parameters.p)
        length = \(parameters.length)
        salt = \(Self.hex(salt))
        key = \(Self.hex(keyBytes))

        """
    }

    /// Parses the key file; `path` only names the file in errors.
    public static func parse(_ text: String, path: String = AgentPaths.passphraseKey) throws -> PassphraseKey {
        var fields: [String: String] = [:]
        for raw in text.split(separator: "\n") {
            let line = String(raw).trimmingWhitespace()
            if line.isEmpty || line.hasPrefix("#") { continue }
            guard let eq = line.firstIndex(of: "=") else { throw PassphraseError.keyFile(path, "line \"\(line)\" is not `key = value`") }
            fields[String(line[..<eq]).trimmingWhitespace()] = String(line[line.index(after: eq)...]).trimmingWhitespace()
        }
        func field(_ name: String) throws -> String {
            guard let v = fields[name], !v.isEmpty else { throw PassphraseError.keyFile(path, "no \(name)") }
            return v
        }
        func int(_ name: String) throws -> Int {
            guard let v = Int(try field(name)) else { throw PassphraseError.keyFile(path, "\(name) is not a number") }
            return v
        }
        guard try field("format") == "1" else { throw PassphraseError.keyFile(path, "format \(fields["format"]!) is not supported") }
        let params = KDFParameters(algorithm: try field("algorithm"), n: try int("n"), r: try int("r"), p: try int("p"), length: try int("length"))
        do {
            try params.validate()
        } catch let PassphraseError.badParameters(why) {
            throw PassphraseError.keyFile(path, why)
        }
        guard let salt = unhex(try field("salt")), salt.count >= saltLength else {
            throw PassphraseError.keyFile(path, "salt is not \(saltLength) or more hex bytes")
        }
        guard let key = unhex(try field("key")), key.count == params.length else {
            throw PassphraseError.keyFile(path, "key is not \(params.length) hex bytes")
        }
        return PassphraseKey(parameters: params, salt: salt, keyBytes: key)
    }

    /// Loads the key setup stored, for `serve`.
    public static func load(from system: SystemFiles, path: String = AgentPaths.passphraseKey) throws -> PassphraseKey {
        guard let bytes = system.read(path) else { throw PassphraseError.keyMissing(path) }
        return try parse(String(decoding: bytes, as: UTF8.self), path: path)
    }

    /// `load(from:)` under a system root directory (`/` live).
    public static func load(root: String) throws -> PassphraseKey {
        try load(from: RootedFiles(root: root))
    }

    // MARK: - The passphrase file

    /// Reads a passphrase file the way setup and the sender both must: a regular file that neither
    /// group nor others may access, not empty; its content without trailing CR/LF is the passphrase
    /// (so `echo secret > file` works). `path` is a path on this host, not under `--root`.
    public static func readPassphraseFile(_ path: String) throws -> [UInt8] {
        let fd = open(path, O_RDONLY | O_CLOEXEC)
        guard fd >= 0 else {
            let e = errno
            if e == ENOENT { throw PassphraseError.fileMissing(path) }
            throw PassphraseError.fileUnreadable(path, String(cString: strerror(e)))
        }
        defer { close(fd) }
        var st = stat()
        guard fstat(fd, &st) == 0 else { throw PassphraseError.fileUnreadable(path, String(cString: strerror(errno))) }
        guard st.st_mode & S_IFMT == S_IFREG else { throw PassphraseError.fileUnreadable(path, "not a regular file") }
        let mode = UInt32(st.st_mode) & 0o7777
        guard mode & 0o077 == 0 else { throw PassphraseError.fileTooOpen(path, mode: mode) }
        var bytes: [UInt8] = []
        var chunk = [UInt8](repeating: 0, count: 4096)
        while true {
            let n = chunk.withUnsafeMutableBytes { read(fd, $0.baseAddress, $0.count) }
            if n < 0 {
                if errno == EINTR { continue }
                throw PassphraseError.fileUnreadable(path, String(cString: strerror(errno)))
            }
            if n == 0 { break }
            bytes.append(contentsOf: chunk[0..<n])
            guard bytes.count <= 64 * 1024 else { throw PassphraseError.fileUnreadable(path, "larger than 64 KiB; is it the right file?") }
        }
        while let last = bytes.last, last == UInt8(ascii: "\n") || last == UInt8(ascii: "\r") { bytes.removeLast() }
        guard !bytes.isEmpty else { throw PassphraseError.fileEmpty(path) }
        return bytes
    }

    static func hex(_ bytes: [UInt8]) -> String {
        bytes.map { TLSIdentity.hexByte($0).lowercased() }.joined()
    }

    static func unhex(_ text: String) -> [UInt8]? {
        let chars = Array(text.utf8)
        guard chars.count % 2 == 0 else { return nil }
        func nibble(_ c: UInt8) -> UInt8? {
            switch c {
            case UInt8(ascii: "0")...UInt8(ascii: "9"): c - UInt8(ascii: "0")
            case UInt8(ascii: "a")...UInt8(ascii: "f"): c - UInt8(ascii: "a") + 10
            case UInt8(ascii: "A")...UInt8(ascii: "F"): c - UInt8(ascii: "A") + 10
            default: nil
            }
        }
        var out: [UInt8] = []
        out.reserveCapacity(chars.count / 2)
        var i = 0
        while i < chars.count {
            guard let hi = nibble(chars[i]), let lo = nibble(chars[i + 1]) else { return nil }
            out.append(hi << 4 | lo)
            i += 2
        }
        return out
    }
}

public enum PassphraseError: Error, Equatable, CustomStringConvertible {
    case fileMissing(String)
    case fileUnreadable(String, String)
    case fileTooOpen(String, mode: UInt32)
    case fileEmpty(String)
    case emptyPassphrase
    case badParameters(String)
    case keyMissing(String)
    case keyFile(String, String)

    public var description: String {
        switch self {
        case .fileMissing(let path): "passphrase file \(path) does not exist"
        case .fileUnreadable(let path, let why): "cannot read passphrase file \(path): \(why)"
        case .fileTooOpen(let path, let mode):
            "passphrase file \(path) is \(mode & 0o044 != 0 ? "readable" : "accessible") by group/others (mode \(ModeBits.octal(mode))); chmod 600 \(path)"
        case .fileEmpty(let path): "passphrase file \(path) is empty"
        case .emptyPassphrase: "the passphrase is empty"
        case .badParameters(let why): "bad key-derivation parameters: \(why)"
        case .keyMissing(let path): "\(path) is missing; run `mt-agent setup --passphrase-file FILE` to store the passphrase key"
        case .keyFile(let path, let why): "\(path): \(why); run `mt-agent setup --passphrase-file FILE` to write it again"
        }
    }
}
