import Foundation
import Glibc
import Testing

/// The sender against a fake MT (openssl s_server with a canned CHALLENGE): parameters from the
/// wire are bounded before anything is allocated for them (docs/PROTOCOL.md §3.2).
@Suite(.serialized, .tags(.large))
struct SenderHandshakeEndToEndTests {
    /// CHALLENGE (PROTOCOL.md §4) built by hand from the table.
    static func challenge(n: UInt64, r: UInt32, p: UInt32) -> [UInt8] {
        func be<T: FixedWidthInteger>(_ v: T) -> [UInt8] { withUnsafeBytes(of: v.bigEndian) { Array($0) } }
        func str(_ s: [UInt8]) -> [UInt8] { be(UInt16(s.count)) + s }
        let body = be(UInt16(1)) + [UInt8](repeating: 7, count: 32) + str(Array("scrypt".utf8)) + be(n) + be(r) + be(p)
            + str(Array("0123456789abcdef".utf8)) + str(Array("fake-mt".utf8))
        return be(UInt32(body.count + 1)) + [0x02] + body
    }

    struct KDF: Sendable, CustomTestStringConvertible {
        var n: UInt64, r: UInt32, p: UInt32
        var testDescription: String { "n=\(n) r=\(r) p=\(p)" }
    }

    @Test(arguments: [KDF(n: .max, r: 8, p: 1), KDF(n: 1 << 30, r: 8, p: 1), KDF(n: 1 << 14, r: .max, p: 1), KDF(n: 1 << 14, r: 8, p: 1 << 20)])
    func absurdScryptParametersAreRefusedWithOneLine(_ kdf: KDF) throws {
        let dir = try temporaryDirectory()
        defer { try? FileManager.default.removeItem(at: dir) }
        let d = dir.path
        _ = try LoopVolume.run("openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
                                      "-days", "1", "-subj", "/CN=fake-mt", "-keyout", d + "/k.pem", "-out", d + "/c.pem")
        let fp = try LoopVolume.run("openssl", "x509", "-noout", "-fingerprint", "-sha256", "-in", d + "/c.pem")
        let fingerprint = String(fp[fp.index(after: try #require(fp.firstIndex(of: "=")))...]).trimmingCharacters(in: .whitespacesAndNewlines)
        try "a passphrase\n".write(toFile: d + "/pass", atomically: true, encoding: .utf8)
        chmod(d + "/pass", 0o600)
        try Data(count: 1 << 20).write(to: URL(fileURLWithPath: d + "/source.img"))

        let port = try LoopbackListener().freePort()
        let fake = Process()
        fake.executableURL = URL(fileURLWithPath: "/usr/bin/openssl")
        fake.arguments = ["s_server", "-quiet", "-tls1_3", "-accept", "127.0.0.1:\(port)", "-cert", d + "/c.pem", "-key", d + "/k.pem"]
        let input = Pipe()
        fake.standardInput = input
        FileManager.default.createFile(atPath: d + "/fake.out", contents: nil)
        fake.standardOutput = try FileHandle(forWritingTo: URL(fileURLWithPath: d + "/fake.out"))
        fake.standardError = fake.standardOutput
        try fake.run()
        defer {
            if fake.isRunning { kill(fake.processIdentifier, SIGKILL) }
            fake.waitUntilExit()
        }
        // s_server sends what it reads on stdin once a client has connected (-quiet: as data,
        // never as a command). The sender retries until s_server listens.
        input.fileHandleForWriting.write(Data(Self.challenge(n: kdf.n, r: kdf.r, p: kdf.p)))

        let started = Date()
        let r = try mtAgent(["send", "resync", "--source", d + "/source.img", "--to", "127.0.0.1:\(port)", "--fingerprint", fingerprint,
                             "--passphrase-file", d + "/pass", "--pair", "p1", "--group", "g1", "--target", "t1",
                             "--state-dir", d + "/state"])
        #expect(r.status == 2, "a CHALLENGE with \(kdf.testDescription) must end the sender with status 2, not \(r.status): \(r.stderr)")
        let errors = r.stderr.split(separator: "\n").filter { $0.hasPrefix("mt-agent: error:") }
        #expect(errors.count == 1 && errors[0].contains("scrypt"), "\(r.stderr)")
        #expect(Date().timeIntervalSince(started) < 20, "refused parameters are not worth retrying")
    }
}
