import Foundation
import MTAgentReplication
import Testing

/// Replays the fuzz corpus (Tests/Fixtures/frame-corpus: the seeds plus what `Scripts/fuzz`
/// found and merged) through the same check the libFuzzer target runs, so CI keeps every input
/// the fuzzer ever found interesting working without running libFuzzer.
@Suite("Frame codec: fuzz corpus replay")
struct FrameCodecFuzzCorpusTests {
    static let corpus = URL(fileURLWithPath: #filePath)
        .deletingLastPathComponent()
        .appendingPathComponent("../Fixtures/frame-corpus")
        .standardizedFileURL

    static func files() throws -> [URL] {
        try FileManager.default.contentsOfDirectory(at: corpus, includingPropertiesForKeys: [.isRegularFileKey])
            .filter { (try? $0.resourceValues(forKeys: [.isRegularFileKey]).isRegularFile) == true }
            .filter { !$0.lastPathComponent.hasPrefix(".") }
            .sorted { $0.lastPathComponent < $1.lastPathComponent }
    }

    @Test func everyCorpusInputRoundTrips() throws {
        let files = try Self.files()
        #expect(!files.isEmpty, "no corpus in \(Self.corpus.path)")
        var decodedSome = 0, failed = 0
        for file in files {
            let bytes = [UInt8](try Data(contentsOf: file))
            let name = file.lastPathComponent
            do {
                let (frames, error) = try FrameRoundTrip.verify(bytes)
                if frames > 0 { decodedSome += 1 }
                if error != nil { failed += 1 }
                // Seeds say what they are: valid-* is whole frames only, bad-* ends in a frame error.
                if name.hasPrefix("valid-") {
                    #expect(frames > 0 && error == nil, "\(name): \(frames) frames, \(String(describing: error))")
                }
                if name.hasPrefix("bad-") {
                    #expect(error != nil, "\(name) decoded without an error")
                }
            } catch {
                Issue.record("\(name): \(error)")
            }
        }
        // Not vacuous: the corpus exercises both decoded frames and rejected ones.
        #expect(decodedSome > 0, "no corpus input decodes to a frame")
        #expect(failed > 0, "no corpus input fails to decode")
    }

    /// The same inputs through the connection start, as the fuzzer runs them: the small frame
    /// limit before WELCOME and the handshake state machine.
    @Test func everyCorpusInputKeepsTheHandshakeRules() throws {
        var outcomes: [String: HandshakeFuzz.Outcome] = [:]
        for file in try Self.files() {
            do {
                outcomes[file.lastPathComponent] = try HandshakeFuzz.verify([UInt8](try Data(contentsOf: file)))
            } catch {
                Issue.record("\(file.lastPathComponent): \(error)")
            }
        }
        // Seeds that walk each path: authenticated and delivered, a wrong proof, a frame too large
        // for the handshake, a pair frame before WELCOME.
        #expect(outcomes["valid-handshake-open-write"] == .init(authenticated: true, delivered: 2, refusal: nil))
        #expect(outcomes["valid-handshake-wrong-proof"] == .init(authenticated: false, delivered: 0, refusal: .authFailed))
        #expect(outcomes["handshake-oversized-hello"] == .init(authenticated: false, delivered: 0, refusal: .frameTooLarge))
        #expect(outcomes["valid-write-before-hello"] == .init(authenticated: false, delivered: 0, refusal: .notAuthenticated))
    }

    @Test func seedsCoverEveryFrameType() throws {
        var types = Set<UInt8>()
        for file in try Self.files() where file.lastPathComponent.hasPrefix("valid-") {
            let bytes = [UInt8](try Data(contentsOf: file))
            if bytes.count > 4 { types.insert(bytes[4]) }
        }
        #expect(types == [0x01, 0x02, 0x03, 0x04, 0x05, 0x06, 0x10, 0x11, 0x12, 0x13, 0x20, 0x21, 0x22, 0x30, 0x31, 0x32, 0x33, 0x34])
    }

    /// Keeps the committed corpus small (merge with `-merge=1`, see Scripts/fuzz).
    @Test func corpusStaysSmall() throws {
        let files = try Self.files()
        let total = try files.reduce(0) { $0 + (try $1.resourceValues(forKeys: [.fileSizeKey]).fileSize ?? 0) }
        #expect(files.count < 200)
        #expect(total < 1 << 20)
    }
}
