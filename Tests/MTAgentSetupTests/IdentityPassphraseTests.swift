import Glibc
import MTAgentLinux
import Testing

@testable import MTAgentSetup

@Suite("passphrase key", .tags(.medium))
struct IdentityPassphraseTests {
    /// Cheap parameters so the tests stay fast; one test derives with the standard ones.
    static let cheap = KDFParameters(n: 1 << 10, r: 8, p: 1)
    static let salt: [UInt8] = Array(0..<16)

    func passphraseFile(_ root: IdentityScratchRoot, _ content: String, mode: UInt32 = 0o600) throws -> String {
        let path = root.root + "/passphrase.txt"  // a host path, outside /etc of the machine
        try root.put("/passphrase.txt", content, mode: mode)
        return path
    }

    @Test func derivationIsDeterministicAndDependsOnEveryInput() throws {
        let a = try PassphraseKey.derive(passphrase: Array("correct horse".utf8), salt: Self.salt, params: Self.cheap)
        let again = try PassphraseKey.derive(passphrase: Array("correct horse".utf8), salt: Self.salt, params: Self.cheap)
        #expect(a == again)
        #expect(a.keyBytes.count == 32)
        let other = try PassphraseKey.derive(passphrase: Array("correct horsf".utf8), salt: Self.salt, params: Self.cheap)
        #expect(other.keyBytes != a.keyBytes)
        let salted = try PassphraseKey.derive(passphrase: Array("correct horse".utf8), salt: Array(1...16), params: Self.cheap)
        #expect(salted.keyBytes != a.keyBytes)
        let costlier = try PassphraseKey.derive(passphrase: Array("correct horse".utf8), salt: Self.salt, params: KDFParameters(n: 1 << 11, r: 8, p: 1))
        #expect(costlier.keyBytes != a.keyBytes)
        #expect(try a.matches(passphrase: Array("correct horse".utf8)))
        #expect(try !a.matches(passphrase: Array("Correct horse".utf8)))
    }

    @Test func scryptMatchesTheRFC7914Vector() throws {
        // RFC 7914 §12: scrypt("password", "NaCl", N=1024, r=8, p=16, dkLen=64).
        let key = try PassphraseKey.derive(
            passphrase: Array("password".utf8), salt: Array("NaCl".utf8),
            params: KDFParameters(n: 1024, r: 8, p: 16, length: 64)
        )
        #expect(PassphraseKey.hex(key.keyBytes) == "fdbabe1c9d3472007856e7190d01e9fe7c6ad7cbc8237830e77376634b3731622eaf30d92e22a3886ff109279d9830dac727afb94a83ee6d8360cbdfa2cc0640")
    }

    @Test func standardParametersDerive() throws {
        let key = try PassphraseKey.create(passphrase: Array("a long enough passphrase".utf8))
        #expect(key.parameters == KDFParameters(n: 131072, r: 8, p: 1, length: 32))
        #expect(key.salt.count == 16)
        #expect(try key.matches(passphrase: Array("a long enough passphrase".utf8)))
    }

    @Test func bothSidesProveTheSameKey() throws {
        let mt = try PassphraseKey.create(passphrase: Array("s3cret-pass".utf8), params: Self.cheap)
        // The sender knows only the passphrase, and learns salt and parameters from the MT.
        let sender = try PassphraseKey.derive(passphrase: Array("s3cret-pass".utf8), salt: mt.salt, params: mt.parameters)
        let nonces: [UInt8] = Array(repeating: 0xA5, count: 32) + Array(repeating: 0x5A, count: 32)
        #expect(mt.isValidAuthenticationCode(sender.authenticationCode(for: nonces), for: nonces))
        let wrong = try PassphraseKey.derive(passphrase: Array("s3cret-pasS".utf8), salt: mt.salt, params: mt.parameters)
        #expect(!mt.isValidAuthenticationCode(wrong.authenticationCode(for: nonces), for: nonces))
    }

    @Test func keyFileRoundTripsAndRejectsDamage() throws {
        let key = try PassphraseKey.derive(passphrase: Array("pw".utf8), salt: Self.salt, params: Self.cheap)
        let text = key.render()
        #expect(try PassphraseKey.parse(text) == key)
        #expect(text.contains("algorithm = scrypt\nn = 1024\nr = 8\np = 1\nlength = 32\nsalt = 000102030405060708090a0b0c0d0e0f\n"))
        #expect(throws: PassphraseError.keyFile(AgentPaths.passphraseKey, "no key")) {
            try PassphraseKey.parse(text.replacingOccurrencesOfKeyLine())
        }
        #expect(throws: PassphraseError.keyFile(AgentPaths.passphraseKey, "n = 1000 is not a power of two from 2^10 to 2^22")) {
            try PassphraseKey.parse(text.replacing("n = 1024", with: "n = 1000"))
        }
        #expect(throws: PassphraseError.badParameters("n × r needs more than 1 GiB of memory")) {
            try PassphraseKey.derive(passphrase: [1], salt: Self.salt, params: KDFParameters(n: 1 << 22, r: 8, p: 1))
        }
    }

    @Test func passphraseFileRules() throws {
        let root = try IdentityScratchRoot()
        let path = try passphraseFile(root, "hunter2hunter2\n")
        #expect(try PassphraseKey.readPassphraseFile(path) == Array("hunter2hunter2".utf8))

        _ = chmod(path, 0o644)
        #expect(throws: PassphraseError.fileTooOpen(path, mode: 0o644)) { try PassphraseKey.readPassphraseFile(path) }
        #expect("\(PassphraseError.fileTooOpen(path, mode: 0o644))"
            == "passphrase file \(path) is readable by group/others (mode 0644); chmod 600 \(path)")
        _ = chmod(path, 0o640)
        #expect(throws: PassphraseError.fileTooOpen(path, mode: 0o640)) { try PassphraseKey.readPassphraseFile(path) }
        _ = chmod(path, 0o602)
        #expect(throws: PassphraseError.fileTooOpen(path, mode: 0o602)) { try PassphraseKey.readPassphraseFile(path) }

        let empty = try passphraseFile(root, "\n")
        #expect(throws: PassphraseError.fileEmpty(empty)) { try PassphraseKey.readPassphraseFile(empty) }
        #expect(throws: PassphraseError.fileMissing(root.root + "/nope")) { try PassphraseKey.readPassphraseFile(root.root + "/nope") }
        #expect(throws: PassphraseError.fileUnreadable(root.root, "not a regular file")) { try PassphraseKey.readPassphraseFile(root.root) }
    }

    @Test func stepStoresOnlyTheDerivedKeyMode0600() throws {
        let root = try IdentityScratchRoot()
        let secret = "Tr0ub4dor&3-horse-battery"
        var options = SetupOptions()
        options.passphraseFile = try passphraseFile(root, secret + "\n")
        let context = identityContext(root, options: options)
        let step = PassphraseStep(parameters: Self.cheap)
        guard case .needed = try step.check(context) else {
            Issue.record("no key yet should be needed")
            return
        }
        let outcome = try step.apply(context)
        #expect(outcome.summary == "stored the scrypt-derived key (N=1024, r=8, p=1) in /etc/mt-agent/passphrase.key, mode 0600")
        #expect(root.mode(AgentPaths.passphraseKey) == 0o600)
        #expect(root.writes.map(\.mode) == [0o600])

        let stored = try #require(root.read(AgentPaths.passphraseKey))
        #expect(!contains(stored, Array(secret.utf8)))
        #expect(!contains(stored, Array("Tr0ub4dor".utf8)))
        let key = try PassphraseKey.load(root: root.root)
        #expect(try key.matches(passphrase: Array(secret.utf8)))
        #expect(try step.check(context) == .done)

        // Without --passphrase-file a stored key is enough.
        #expect(try step.check(identityContext(root)) == .done)
    }

    @Test func stepRefusesBadPassphraseFilesWithOneLine() throws {
        let root = try IdentityScratchRoot()
        var options = SetupOptions()
        let path = try passphraseFile(root, "hunter2hunter2\n", mode: 0o644)
        options.passphraseFile = path
        let step = PassphraseStep(parameters: Self.cheap)
        #expect(try step.check(identityContext(root, options: options))
            == .blocked("passphrase file \(path) is readable by group/others (mode 0644); chmod 600 \(path)"))
        #expect(throws: PassphraseError.fileTooOpen(path, mode: 0o644)) { try step.apply(identityContext(root, options: options)) }

        options.passphraseFile = root.root + "/missing"
        #expect(try step.check(identityContext(root, options: options)) == .blocked("passphrase file \(root.root)/missing does not exist"))
        options.passphraseFile = try passphraseFile(root, "")
        #expect(try step.check(identityContext(root, options: options)) == .blocked("passphrase file \(root.root)/passphrase.txt is empty"))

        #expect(try step.check(identityContext(root))
            == .blocked("no passphrase key yet: pass --passphrase-file FILE (a file of mode 0600 holding the replication passphrase)"))
        #expect(root.writes.isEmpty)
        #expect(!root.exists(AgentPaths.passphraseKey))
    }

    @Test func newPassphraseReplacesKeyAndLooseModeIsFixed() throws {
        let root = try IdentityScratchRoot()
        var options = SetupOptions()
        options.passphraseFile = try passphraseFile(root, "first passphrase")
        let step = PassphraseStep(parameters: Self.cheap)
        _ = try step.apply(identityContext(root, options: options))
        let first = try PassphraseKey.load(root: root.root)

        _ = chmod(root.host(AgentPaths.passphraseKey), 0o644)
        #expect(try step.check(identityContext(root)) == .needed("set /etc/mt-agent/passphrase.key to mode 0600 (it is 0644)"))
        _ = try step.apply(identityContext(root))
        #expect(root.mode(AgentPaths.passphraseKey) == 0o600)
        #expect(try PassphraseKey.load(root: root.root) == first)

        options.passphraseFile = try passphraseFile(root, "second passphrase")
        #expect(try step.check(identityContext(root, options: options))
            == .needed("replace /etc/mt-agent/passphrase.key: \(root.root)/passphrase.txt holds a different passphrase"))
        _ = try step.apply(identityContext(root, options: options))
        let second = try PassphraseKey.load(root: root.root)
        #expect(second != first)
        #expect(try second.matches(passphrase: Array("second passphrase".utf8)))
        #expect(try step.check(identityContext(root, options: options)) == .done)
    }

    @Test func damagedKeyFileBlocks() throws {
        let root = try IdentityScratchRoot()
        try root.put(AgentPaths.passphraseKey, "format = 1\nalgorithm = argon2\n", mode: 0o600)
        #expect(try PassphraseStep(parameters: Self.cheap).check(identityContext(root))
            == .blocked("/etc/mt-agent/passphrase.key: no n; run `mt-agent setup --passphrase-file FILE` to write it again"))
    }

    func contains(_ haystack: [UInt8], _ needle: [UInt8]) -> Bool {
        guard needle.count <= haystack.count else { return false }
        return (0...(haystack.count - needle.count)).contains { Array(haystack[$0..<$0 + needle.count]) == needle }
    }
}

extension String {
    fileprivate func replacingOccurrencesOfKeyLine() -> String {
        split(separator: "\n", omittingEmptySubsequences: false).filter { !$0.hasPrefix("key = ") }.joined(separator: "\n")
    }
}
