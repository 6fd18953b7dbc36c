import Glibc
import MTAgentLinux
import Testing

@testable import MTAgentSetup

@Suite("TLS identity", .tags(.medium))
struct IdentityTLSTests {
    func machine(hostname: String = "mt01.lab.example") throws -> IdentityScratchRoot {
        let root = try IdentityScratchRoot()
        try root.put("/proc/sys/kernel/hostname", hostname + "\n")
        try root.put("/proc/net/fib_trie", """
            Main:
              +-- 0.0.0.0/0 3 0 5
                 |-- 0.0.0.0
                    /0 universe UNICAST
                 +-- 127.0.0.0/8 2 0 2
                    |-- 127.0.0.1
                       /32 host LOCAL
                 |-- 192.168.10.20
                    /32 host LOCAL
            Local:
                 |-- 192.168.10.20
                    /32 host LOCAL
                 |-- 192.168.10.255
                    /32 link BROADCAST

            """)
        try root.put("/proc/net/if_inet6", """
            00000000000000000000000000000001 01 80 10 80       lo
            fe800000000000000250569ffe8b1c2d 02 40 20 80     ens192
            20010db8000000010000000000000020 02 40 00 00     ens192

            """)
        return root
    }

    @Test func hostAddressesFromProc() throws {
        let root = try machine()
        let system = RootedFiles(root: root.root)
        #expect(HostIdentity.hostname(system) == "mt01.lab.example")
        #expect(HostIdentity.addresses(system) == ["192.168.10.20", "2001:db8:0:1::20"])
    }

    @Test func stepWritesKeyAndCertificateThatOpenSSLAgreesWith() throws {
        let root = try machine()
        let context = identityContext(root)
        let step = TLSIdentityStep()
        guard case .needed = try step.check(context) else {
            Issue.record("no identity yet should be needed")
            return
        }
        let outcome = try step.apply(context)
        #expect(root.mode(AgentPaths.tlsKey) == 0o600)
        #expect(root.mode(AgentPaths.tlsCertificate) == 0o644)
        #expect(root.writes.map(\.path) == [AgentPaths.tlsKey, AgentPaths.tlsCertificate])

        let identity = try TLSIdentity.load(root: root.root)
        #expect(outcome.notes == ["TLS certificate SHA-256 fingerprint: \(identity.fingerprint)"])
        #expect(identity.fingerprint.count == 32 * 3 - 1)

        // openssl's view of the same files.
        let certPath = root.host(AgentPaths.tlsCertificate)
        let keyPath = root.host(AgentPaths.tlsKey)
        let fp = try identityRun("openssl", "x509", "-noout", "-fingerprint", "-sha256", "-in", certPath)
        #expect(String(fp.split(separator: "\n").first ?? "") == "sha256 Fingerprint=\(identity.fingerprint)")
        let text = try identityRun("openssl", "x509", "-noout", "-text", "-in", certPath)
        #expect(text.contains("Subject: CN = mt01.lab.example"))
        #expect(text.contains("Issuer: CN = mt01.lab.example"))
        #expect(text.contains("DNS:mt01.lab.example, IP Address:192.168.10.20, IP Address:2001:DB8:0:1:0:0:0:20"))
        #expect(text.contains("TLS Web Server Authentication"))
        #expect(text.contains("ecdsa-with-SHA256"))
        #expect(text.contains("NIST CURVE: P-256") || text.contains("prime256v1"))
        // Valid for ten years from (about) now.
        let end = try identityRun("openssl", "x509", "-noout", "-checkend", "\(9 * 365 * 86400)", "-in", certPath)
        #expect(end.contains("will not expire"))
        // The key is the certificate's: openssl derives the same public key from both.
        let fromCert = try identityRun("openssl", "x509", "-noout", "-pubkey", "-in", certPath)
        let fromKey = try identityRun("openssl", "pkey", "-pubout", "-in", keyPath)
        #expect(fromCert == fromKey)
        // And it verifies its own signature.
        let verify = try identityRun("openssl", "verify", "-CAfile", certPath, "-partial_chain", certPath)
        #expect(verify.contains(": OK"))

        #expect(try step.check(context) == .done)
    }

    @Test func keptOnRerunSoThePinnedFingerprintHolds() throws {
        let root = try machine()
        let context = identityContext(root)
        _ = try TLSIdentityStep().apply(context)
        let before = try TLSIdentity.load(root: root.root)
        #expect(try TLSIdentityStep().check(context) == .done)
        // A loosened key mode is fixed without a new identity.
        _ = chmod(root.host(AgentPaths.tlsKey), 0o644)
        #expect(try TLSIdentityStep().check(context) == .needed("set /etc/mt-agent/tls/key.pem to mode 0600 (it is 0644)"))
        let outcome = try TLSIdentityStep().apply(context)
        #expect(root.mode(AgentPaths.tlsKey) == 0o600)
        #expect(try TLSIdentity.load(root: root.root) == before)
        #expect(outcome.notes == ["TLS certificate SHA-256 fingerprint: \(before.fingerprint)"])
    }

    @Test func mismatchedOrBrokenIdentityBlocks() throws {
        let root = try machine()
        let context = identityContext(root)
        let a = try TLSIdentity.generate(hostname: "a")
        let b = try TLSIdentity.generate(hostname: "b")
        try root.put(AgentPaths.tlsCertificate, a.certificatePEM)
        try root.put(AgentPaths.tlsKey, b.privateKeyPEM, mode: 0o600)
        #expect(throws: TLSIdentityError.keyMismatch) { try TLSIdentity.load(root: root.root) }
        guard case .blocked(let why) = try TLSIdentityStep().check(context) else {
            Issue.record("a mismatched pair must block, not be replaced")
            return
        }
        #expect(why.contains("is not the key of /etc/mt-agent/tls/cert.pem"))

        try root.put(AgentPaths.tlsCertificate, "garbage\n")
        #expect(try TLSIdentityStep().check(context) == .blocked("/etc/mt-agent/tls/cert.pem: not a PEM X.509 certificate"))
    }

    @Test func halfWrittenIdentityIsMadeAgain() throws {
        // A run killed after the key and before the certificate: no fingerprint was ever printed.
        let root = try machine()
        let context = identityContext(root)
        try root.put(AgentPaths.tlsKey, try TLSIdentity.generate(hostname: "x").privateKeyPEM, mode: 0o600)
        guard case .needed = try TLSIdentityStep().check(context) else {
            Issue.record("a key without certificate should be needed")
            return
        }
        _ = try TLSIdentityStep().apply(context)
        #expect(try TLSIdentityStep().check(context) == .done)
    }

    @Test func fingerprintFormats() throws {
        let fp = TLSIdentity.fingerprint(of: [])
        #expect(fp == "E3:B0:C4:42:98:FC:1C:14:9A:FB:F4:C8:99:6F:B9:24:27:AE:41:E4:64:9B:93:4C:A4:95:99:1B:78:52:B8:55")
        #expect(TLSIdentity.normalizeFingerprint(fp.lowercased().filter { $0 != ":" }) == fp)
        #expect(TLSIdentity.normalizeFingerprint("AB:CD") == nil)
        #expect(throws: TLSIdentityError.missing(AgentPaths.tlsCertificate)) { try TLSIdentity.load(root: "/nonexistent-root") }
    }
}

