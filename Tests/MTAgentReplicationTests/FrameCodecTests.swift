import MTAgentReplication
import NIOCore
import NIOEmbedded
import NIOTestUtils
import Testing

// The frame codec (Wire/Frame.swift, Wire/FrameCodec.swift) against docs/PROTOCOL.md §2, §4, §9.

/// One example of every `Frame` case, plus frames at the edges of the limits.
enum FrameSamples {
    static let nonce: [UInt8] = Array(0..<32)
    static let mac: [UInt8] = (0..<32).map { UInt8(0xA0 &+ $0) }
    static let sha: [UInt8] = Array(repeating: 0xAB, count: 32)

    static let hello = Frame.hello(.init(minVersion: 1, maxVersion: 3, nonce: nonce, senderName: "ps-01.example"))
    static let challenge = Frame.challenge(.init(
        version: 1, nonce: mac, kdf: "scrypt", n: 1 << 15, r: 8, p: 1, salt: Array(repeating: 0x5A, count: 16),
        serverName: "mt-01"))
    static let proof = Frame.proof(mac: mac)
    static let welcome = Frame.welcome(mac: nonce, heartbeatMillis: 5000, maxWrite: 1 << 20)
    static let error = Frame.error(code: .authFailed, message: "the passphrase proof did not verify")
    static let heartbeat = Frame.heartbeat(unixMillis: 1_767_225_600_000)
    static let openPair = Frame.openPair(.init(
        handle: 1, pairID: "pair-α", groupID: "group-1", target: "/dev/disk/by-id/virtio-mt1", sourceSize: 10 << 30))
    static let pairState = Frame.pairState(.init(
        handle: 1, state: .resyncRequired, durableSeq: 42, resyncOffset: 1 << 20, targetSize: 10 << 30, reason: "sequence-gap at 43"))
    static let pairError = Frame.pairError(handle: 2, code: .sequenceGap, message: "expected 43, got 45")
    static let closePair = Frame.closePair(handle: 3)
    static let write = Frame.write(.init(handle: 1, seq: 43, offset: 8192, sha256: sha, data: ByteBuffer(bytes: [1, 2, 3, 4, 5])))
    static let tag = Frame.tag(.init(handle: 1, seq: 44, tagID: 7, kind: 2, sourceTime: 1_767_225_600_123_456_789, name: "pre-upgrade"))
    static let ack = Frame.ack(handle: 1, durableSeq: 44)
    static let resyncBegin = Frame.resyncBegin(handle: 1, seq: 45)
    static let hashRequest = Frame.hashRequest(handle: 1, offset: 0, chunkSize: 1 << 20, count: 64)
    static let hashes = Frame.hashes(.init(handle: 1, offset: 0, chunkSize: 1 << 20, digests: nonce + mac + sha))
    static let resyncMark = Frame.resyncMark(handle: 1, seq: 46, through: 64 << 20)
    static let resyncDone = Frame.resyncDone(handle: 1, seq: 47)

    /// Every case once, in type order.
    static let all: [Frame] = [
        hello, challenge, proof, welcome, error, heartbeat, openPair, pairState, pairError, closePair,
        write, tag, ack, resyncBegin, hashRequest, hashes, resyncMark, resyncDone,
    ]

    /// Empty strings, zero values, the longest strings, multi-byte UTF-8, the largest bodies.
    static let edges: [Frame] = [
        .hello(.init(minVersion: 0, maxVersion: .max, nonce: sha, senderName: "")),
        .hello(.init(minVersion: 1, maxVersion: 1, nonce: nonce, senderName: String(repeating: "x", count: FrameLimits.maxString))),
        .error(code: .unknown(65535), message: String(repeating: "é", count: FrameLimits.maxString / 2)),
        .challenge(.init(version: 1, nonce: nonce, kdf: "", n: .max, r: .max, p: .max, salt: [], serverName: "")),
        .pairState(.init(handle: .max, state: .new, durableSeq: 0, resyncOffset: 0, targetSize: 0, reason: "")),
        .pairState(.init(handle: 1, state: .resyncing, durableSeq: .max, resyncOffset: .max, targetSize: .max, reason: "x")),
        .pairState(.init(handle: 1, state: .inSync, durableSeq: 1, resyncOffset: 0, targetSize: 1, reason: "")),
        .tag(.init(handle: 1, seq: .max, tagID: 0, kind: 1, sourceTime: 0, name: "")),
        .ack(handle: 1, durableSeq: 0),
        .write(.init(handle: 1, seq: 1, offset: .max, sha256: sha, data: ByteBuffer(bytes: [0]))),
        .hashRequest(handle: 1, offset: .max, chunkSize: 4096, count: 1),
        .hashRequest(handle: 1, offset: 0, chunkSize: 4 << 20, count: UInt32(FrameLimits.maxHashCount)),
        .hashes(.init(handle: 1, offset: 0, chunkSize: 4096, digests: [])),
    ]

    /// The largest bodies (kept out of parameterized tests: their descriptions are megabytes).
    static let largest: [Frame] = [
        .challenge(.init(version: 1, nonce: nonce, kdf: "scrypt", n: 1, r: 1, p: 1, salt: Array(repeating: 1, count: 65535), serverName: "🛰️")),
        .write(.init(handle: 1, seq: 1, offset: 0, sha256: sha, data: ByteBuffer(repeating: 0x77, count: FrameLimits.maxWriteData))),
        .hashes(.init(handle: 1, offset: 0, chunkSize: 4096, digests: Array(repeating: 0xCD, count: 32 * FrameLimits.maxHashCount))),
    ]

    /// Compile-time reminder: a new `Frame` case breaks this switch, and then belongs in `all`.
    static func caseName(_ frame: Frame) -> String {
        switch frame {
        case .hello: "hello"
        case .challenge: "challenge"
        case .proof: "proof"
        case .welcome: "welcome"
        case .error: "error"
        case .heartbeat: "heartbeat"
        case .openPair: "openPair"
        case .pairState: "pairState"
        case .pairError: "pairError"
        case .closePair: "closePair"
        case .write: "write"
        case .tag: "tag"
        case .ack: "ack"
        case .resyncBegin: "resyncBegin"
        case .hashRequest: "hashRequest"
        case .hashes: "hashes"
        case .resyncMark: "resyncMark"
        case .resyncDone: "resyncDone"
        }
    }
    static let caseCount = 18
}

/// The frame's bytes, length prefix included, as FrameEncoder writes them.
func encoded(_ frames: Frame...) throws -> ByteBuffer {
    var out = ByteBuffer()
    for frame in frames { try FrameEncoder().encode(data: frame, out: &out) }
    return out
}

func encodedBytes(_ frame: Frame) throws -> [UInt8] {
    Array(try encoded(frame).readableBytesView)
}

/// A frame with the given type and body and a correct length prefix.
func rawFrame(type: UInt8, body: [UInt8]) -> [UInt8] {
    let length = UInt32(1 + body.count)
    return [UInt8(length >> 24), UInt8(truncatingIfNeeded: length >> 16), UInt8(truncatingIfNeeded: length >> 8), UInt8(truncatingIfNeeded: length), type] + body
}

/// The body (after the type byte) of a frame's encoding.
func body(of frame: Frame) throws -> [UInt8] {
    Array(try encodedBytes(frame).dropFirst(5))
}

/// `body` with `bytes` written over it at `offset`.
func patched(_ body: [UInt8], at offset: Int, _ bytes: [UInt8]) -> [UInt8] {
    var body = body
    body.replaceSubrange(offset..<(offset + bytes.count), with: bytes)
    return body
}

/// Decodes frames from `bytes` until it needs more data; the error that stopped it, if any.
func decodeFailure(_ bytes: [UInt8]) -> FrameError? {
    var buffer = ByteBuffer(bytes: bytes)
    var decoder = FrameDecoder()
    do {
        while try decoder.decodeOne(&buffer) != nil {}
        return nil
    } catch let error as FrameError {
        return error
    } catch {
        Issue.record("decodeOne threw \(error), not a FrameError")
        return nil
    }
}

func expectMalformed(_ bytes: [UInt8], type: UInt8, _ what: String, sourceLocation: SourceLocation = #_sourceLocation) {
    let error = decodeFailure(bytes)
    guard case .malformed(let actualType, _)? = error else {
        Issue.record("\(what): expected .malformed(type: 0x\(String(type, radix: 16))), got \(String(describing: error))", sourceLocation: sourceLocation)
        return
    }
    #expect(actualType == type, "\(what)", sourceLocation: sourceLocation)
    #expect(error?.code == .malformedFrame, sourceLocation: sourceLocation)
}

@Suite("Frame codec: round trips")
struct FrameCodecRoundTripTests {
    @Test func samplesCoverEveryCase() {
        #expect(Set(FrameSamples.all.map(FrameSamples.caseName)).count == FrameSamples.caseCount)
        #expect(FrameSamples.all.count == FrameSamples.caseCount)
        #expect(FrameSamples.all.map(\.type) == [0x01, 0x02, 0x03, 0x04, 0x05, 0x06, 0x10, 0x11, 0x12, 0x13, 0x20, 0x21, 0x22, 0x30, 0x31, 0x32, 0x33, 0x34])
    }

    @Test("encode → bytes → decode", arguments: FrameSamples.all + FrameSamples.edges)
    func roundTrip(_ frame: Frame) throws {
        var buffer = try encoded(frame)
        #expect(Int(buffer.getInteger(at: buffer.readerIndex, as: UInt32.self)!) == buffer.readableBytes - 4)
        #expect(buffer.getInteger(at: buffer.readerIndex + 4, as: UInt8.self) == frame.type)
        #expect(buffer.readableBytes - 4 <= FrameLimits.maxFrameLength)
        var decoder = FrameDecoder()
        let decoded = try decoder.decodeOne(&buffer)
        #expect(decoded == frame)
        #expect(buffer.readableBytes == 0)
        #expect(try decoder.decodeOne(&buffer) == nil)
    }

    @Test func largestFramesRoundTrip() throws {
        for frame in FrameSamples.largest {
            var buffer = try encoded(frame)
            #expect(buffer.readableBytes - 4 <= FrameLimits.maxFrameLength)
            var decoder = FrameDecoder()
            #expect(try decoder.decodeOne(&buffer) == frame, "\(FrameSamples.caseName(frame))")
            #expect(buffer.readableBytes == 0)
        }
    }

    @Test func roundTripThroughAChannelPipeline() throws {
        let channel = EmbeddedChannel()
        try channel.pipeline.syncOperations.addHandler(ByteToMessageHandler(FrameDecoder()))
        try channel.pipeline.syncOperations.addHandler(MessageToByteHandler(FrameEncoder()))
        for frame in FrameSamples.all {
            try channel.writeOutbound(frame)
        }
        // Everything the encoder wrote, as one stream, back in.
        var stream = ByteBuffer()
        while var chunk = try channel.readOutbound(as: ByteBuffer.self) { stream.writeBuffer(&chunk) }
        try channel.writeInbound(stream)
        var decoded: [Frame] = []
        while let frame = try channel.readInbound(as: Frame.self) { decoded.append(frame) }
        #expect(decoded == FrameSamples.all)
        #expect(try channel.finish().isClean)
    }

    @Test func frameCutAnywhereNeedsMoreData() throws {
        // Every proper prefix of a stream of frames yields exactly the frames that are whole in it.
        let stream = Array(try encoded(FrameSamples.hello, FrameSamples.ack, FrameSamples.write).readableBytesView)
        let ends = [try encodedBytes(FrameSamples.hello).count, try encodedBytes(FrameSamples.ack).count, try encodedBytes(FrameSamples.write).count]
            .reduce(into: [Int]()) { $0.append(($0.last ?? 0) + $1) }
        for cut in 0..<stream.count {
            var buffer = ByteBuffer(bytes: stream[..<cut])
            var decoder = FrameDecoder()
            var count = 0
            while try decoder.decodeOne(&buffer) != nil { count += 1 }
            #expect(count == ends.filter { $0 <= cut }.count, "cut at \(cut)")
        }
    }

    @Test func byteToMessageDecoderVerifier() throws {
        var pairs: [(ByteBuffer, [Frame])] = try FrameSamples.all.map { (try encoded($0), [$0]) }
        pairs.append((try encoded(FrameSamples.write, FrameSamples.tag, FrameSamples.ack), [FrameSamples.write, FrameSamples.tag, FrameSamples.ack]))
        pairs.append((try encoded(FrameSamples.edges[1], FrameSamples.edges[12]), [FrameSamples.edges[1], FrameSamples.edges[12]]))
        try ByteToMessageDecoderVerifier.verifyDecoder(inputOutputPairs: pairs, decoderFactory: { FrameDecoder() })
    }

    @Test func encoderCutsOverlongStringsAtCharacterBoundaries() throws {
        // 1023 ASCII bytes + "é" (2 bytes) = 1025: the whole "é" goes, the result stays UTF-8.
        let long = String(repeating: "a", count: 1023) + "é"
        var buffer = try encoded(.error(code: .timeout, message: long))
        var decoder = FrameDecoder()
        #expect(try decoder.decodeOne(&buffer) == .error(code: .timeout, message: String(repeating: "a", count: 1023)))
    }
}

@Suite("Frame codec: golden bytes from docs/PROTOCOL.md")
struct FrameCodecGoldenTests {
    // length u32 BE (type byte + body) | type u8 | body; all integers big-endian;
    // str = u16 count + UTF-8 bytes.

    @Test func hello() throws {
        let frame = Frame.hello(.init(minVersion: 1, maxVersion: 2, nonce: Array(0..<32), senderName: "ps1"))
        let expected: [UInt8] = [
            0x00, 0x00, 0x00, 0x2E,  // length 46 = 1 + 4 + 2 + 2 + 32 + 2 + 3
            0x01,  // HELLO
            0x4D, 0x54, 0x41, 0x47,  // magic "MTAG"
            0x00, 0x01,  // minVersion 1
            0x00, 0x02,  // maxVersion 2
            0x00, 0x01, 0x02, 0x03, 0x04, 0x05, 0x06, 0x07, 0x08, 0x09, 0x0A, 0x0B, 0x0C, 0x0D, 0x0E, 0x0F,
            0x10, 0x11, 0x12, 0x13, 0x14, 0x15, 0x16, 0x17, 0x18, 0x19, 0x1A, 0x1B, 0x1C, 0x1D, 0x1E, 0x1F,  // nonce
            0x00, 0x03, 0x70, 0x73, 0x31,  // senderName "ps1"
        ]
        try expectGolden(frame, expected)
    }

    @Test func writeWithTinyData() throws {
        let frame = Frame.write(.init(handle: 7, seq: 1, offset: 4096, sha256: Array(repeating: 0xAB, count: 32), data: ByteBuffer(bytes: [0xDE, 0xAD])))
        let expected: [UInt8] = [
            0x00, 0x00, 0x00, 0x37,  // length 55 = 1 + 4 + 8 + 8 + 32 + 2
            0x20,  // WRITE
            0x00, 0x00, 0x00, 0x07,  // handle 7
            0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x01,  // seq 1
            0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x10, 0x00,  // offset 4096
            0xAB, 0xAB, 0xAB, 0xAB, 0xAB, 0xAB, 0xAB, 0xAB, 0xAB, 0xAB, 0xAB, 0xAB, 0xAB, 0xAB, 0xAB, 0xAB,
            0xAB, 0xAB, 0xAB, 0xAB, 0xAB, 0xAB, 0xAB, 0xAB, 0xAB, 0xAB, 0xAB, 0xAB, 0xAB, 0xAB, 0xAB, 0xAB,  // sha256
            0xDE, 0xAD,  // data: the rest of the body
        ]
        try expectGolden(frame, expected)
    }

    @Test func ack() throws {
        let frame = Frame.ack(handle: 7, durableSeq: 0x0102_0304_0506_0708)
        let expected: [UInt8] = [
            0x00, 0x00, 0x00, 0x0D,  // length 13 = 1 + 4 + 8
            0x22,  // ACK
            0x00, 0x00, 0x00, 0x07,  // handle 7
            0x01, 0x02, 0x03, 0x04, 0x05, 0x06, 0x07, 0x08,  // durableSeq
        ]
        try expectGolden(frame, expected)
    }

    @Test func error() throws {
        let frame = Frame.error(code: .authFailed, message: "no")
        let expected: [UInt8] = [
            0x00, 0x00, 0x00, 0x07,  // length 7 = 1 + 2 + 2 + 2
            0x05,  // ERROR
            0x00, 0x04,  // code 4 auth-failed
            0x00, 0x02, 0x6E, 0x6F,  // message "no"
        ]
        try expectGolden(frame, expected)
    }

    @Test func pairStateAndTag() throws {
        try expectGolden(
            .pairState(.init(handle: 1, state: .inSync, durableSeq: 2, resyncOffset: 3, targetSize: 4, reason: "")),
            [0x00, 0x00, 0x00, 0x20, 0x11,  // length 32 = 1 + 4 + 1 + 8 + 8 + 8 + 2
             0x00, 0x00, 0x00, 0x01, 0x02,  // handle 1, state 2 in-sync
             0, 0, 0, 0, 0, 0, 0, 2, 0, 0, 0, 0, 0, 0, 0, 3, 0, 0, 0, 0, 0, 0, 0, 4,  // durableSeq, resyncOffset, targetSize
             0x00, 0x00])  // reason ""
        try expectGolden(
            .tag(.init(handle: 1, seq: 2, tagID: 3, kind: 1, sourceTime: 4, name: "t")),
            [0x00, 0x00, 0x00, 0x21, 0x21,  // length 33 = 1 + 4 + 8 + 8 + 1 + 8 + 3
             0x00, 0x00, 0x00, 0x01,  // handle
             0, 0, 0, 0, 0, 0, 0, 2, 0, 0, 0, 0, 0, 0, 0, 3,  // seq, tagID
             0x01,  // kind crash
             0, 0, 0, 0, 0, 0, 0, 4,  // sourceTime
             0x00, 0x01, 0x74])  // name "t"
    }

    @Test func maximumFrameLengthIsFourMiBPlus256() {
        #expect(FrameLimits.maxFrameLength == 4_194_560)
        #expect(FrameLimits.maxWriteData == 4 * 1024 * 1024)
        #expect(FrameLimits.maxString == 1024)
        #expect(FrameLimits.maxHashCount == 65_536)
    }

    func expectGolden(_ frame: Frame, _ expected: [UInt8], sourceLocation: SourceLocation = #_sourceLocation) throws {
        #expect(try encodedBytes(frame) == expected, sourceLocation: sourceLocation)
        var buffer = ByteBuffer(bytes: expected)
        var decoder = FrameDecoder()
        #expect(try decoder.decodeOne(&buffer) == frame, sourceLocation: sourceLocation)
        #expect(buffer.readableBytes == 0, sourceLocation: sourceLocation)
    }
}

@Suite("Frame codec: malformed input")
struct FrameCodecMalformedTests {
    @Test func lengthZero() {
        #expect(decodeFailure([0, 0, 0, 0]) == .empty)
        #expect(decodeFailure([0, 0, 0, 0, 0x06, 1, 2, 3]) == .empty)
        #expect(FrameError.empty.code == .frameTooLarge)
    }

    @Test(arguments: [UInt32(FrameLimits.maxFrameLength) + 1, 0x0100_0000, .max])
    func lengthAboveTheMaximumFailsOnTheHeaderAlone(_ length: UInt32) throws {
        var header = ByteBuffer()
        header.writeInteger(length)
        var decoder = FrameDecoder()
        #expect(throws: FrameError.tooLarge(length: length)) { try decoder.decodeOne(&header) }
        #expect(FrameError.tooLarge(length: length).code == .frameTooLarge)
    }

    @Test func maximumLengthWaitsForItsBody() throws {
        var header = ByteBuffer()
        header.writeInteger(UInt32(FrameLimits.maxFrameLength))
        var decoder = FrameDecoder()
        #expect(try decoder.decodeOne(&header) == nil)
    }

    @Test(arguments: [UInt8(0x00), 0x07, 0x0F, 0x14, 0x1F, 0x23, 0x2F, 0x35, 0x40, 0x7F, 0x80, 0xFF])
    func unknownType(_ type: UInt8) {
        #expect(decodeFailure(rawFrame(type: type, body: [])) == .unknownType(type))
        #expect(decodeFailure(rawFrame(type: type, body: [1, 2, 3, 4])) == .unknownType(type))
        #expect(FrameError.unknownType(type).code == .malformedFrame)
    }

    @Test("truncated body", arguments: FrameSamples.all)
    func truncatedBody(_ frame: Frame) throws {
        let full = try body(of: frame)
        // WRITE's data is the rest of the body: any non-empty rest is whole. Cut into the fixed fields.
        let shortest = if case .write = frame { 52 } else { full.count - 1 }
        for length in 0...shortest {
            expectMalformed(rawFrame(type: frame.type, body: Array(full.prefix(length))), type: frame.type, "body cut to \(length) of \(full.count) bytes")
        }
    }

    @Test("bytes left over", arguments: FrameSamples.all.filter { if case .write = $0 { false } else { true } })
    func bytesLeftOver(_ frame: Frame) throws {
        expectMalformed(rawFrame(type: frame.type, body: try body(of: frame) + [0]), type: frame.type, "one byte extra")
        expectMalformed(rawFrame(type: frame.type, body: try body(of: frame) + Array(repeating: 0xFF, count: 100)), type: frame.type, "100 bytes extra")
    }

    @Test func badHelloMagic() throws {
        let hello = try body(of: FrameSamples.hello)
        expectMalformed(rawFrame(type: 0x01, body: patched(hello, at: 0, Array("MTAH".utf8))), type: 0x01, "magic MTAH")
        expectMalformed(rawFrame(type: 0x01, body: patched(hello, at: 0, [0x47, 0x41, 0x54, 0x4D])), type: 0x01, "magic little-endian")
    }

    @Test(arguments: [[0xFF, 0xFE], [0xC3], [0x61, 0x80], [0xC0, 0xAF], [0xED, 0xA0, 0x80], [0xF4, 0x90, 0x80, 0x80]] as [[UInt8]])
    func nonUTF8String(_ bad: [UInt8]) throws {
        let string = [0x00, UInt8(bad.count)] + bad
        // HELLO.senderName is the last field.
        let hello = try body(of: .hello(.init(minVersion: 1, maxVersion: 1, nonce: FrameSamples.nonce, senderName: "")))
        expectMalformed(rawFrame(type: 0x01, body: Array(hello.dropLast(2)) + string), type: 0x01, "senderName \(bad)")
        // ERROR.message, PAIR_ERROR.message.
        expectMalformed(rawFrame(type: 0x05, body: [0x00, 0x01] + string), type: 0x05, "message \(bad)")
        expectMalformed(rawFrame(type: 0x12, body: [0, 0, 0, 1, 0x00, 0x01] + string), type: 0x12, "message \(bad)")
        // OPEN_PAIR.pairID, the first of three strings.
        expectMalformed(rawFrame(type: 0x10, body: [0, 0, 0, 1] + string + [0, 0, 0, 0] + Array(repeating: 0, count: 8)), type: 0x10, "pairID \(bad)")
    }

    @Test func stringLongerThan1024() throws {
        let hello = try body(of: .hello(.init(minVersion: 1, maxVersion: 1, nonce: FrameSamples.nonce, senderName: "")))
        let ok: [UInt8] = Array(hello.dropLast(2)) + [0x04, 0x00] + Array(repeating: 0x61, count: 1024)
        #expect(decodeFailure(rawFrame(type: 0x01, body: Array(ok))) == nil)
        let long: [UInt8] = Array(hello.dropLast(2)) + [0x04, 0x01] + Array(repeating: 0x61, count: 1025)
        expectMalformed(rawFrame(type: 0x01, body: Array(long)), type: 0x01, "senderName of 1025 bytes")
        // The count alone is enough: the bytes need not follow.
        expectMalformed(rawFrame(type: 0x05, body: [0x00, 0x01, 0xFF, 0xFF]), type: 0x05, "message count 65535")
    }

    @Test("handle 0", arguments: FrameSamples.all.filter { $0.handle != nil })
    func handleZero(_ frame: Frame) throws {
        expectMalformed(rawFrame(type: frame.type, body: patched(try body(of: frame), at: 0, [0, 0, 0, 0])), type: frame.type, "handle 0")
    }

    @Test("seq 0", arguments: [FrameSamples.write, FrameSamples.tag, FrameSamples.resyncBegin, FrameSamples.resyncMark, FrameSamples.resyncDone])
    func seqZero(_ frame: Frame) throws {
        // seq follows the handle in every frame that changes a pair.
        expectMalformed(rawFrame(type: frame.type, body: patched(try body(of: frame), at: 4, Array(repeating: 0, count: 8))), type: frame.type, "seq 0")
    }

    @Test(arguments: [UInt8(0), 3, 0xFF])
    func tagKind(_ kind: UInt8) throws {
        // handle u32, seq u64, tagID u64, then kind.
        expectMalformed(rawFrame(type: 0x21, body: patched(try body(of: FrameSamples.tag), at: 20, [kind])), type: 0x21, "tag kind \(kind)")
    }

    @Test func writeData() throws {
        let write = try body(of: FrameSamples.write)
        expectMalformed(rawFrame(type: 0x20, body: Array(write.prefix(52))), type: 0x20, "WRITE without data")
        // The frame limit leaves room for 4 MiB + 203 bytes of data; the WRITE limit is 4 MiB.
        let over = Array(write.prefix(52)) + Array(repeating: 0x11, count: FrameLimits.maxWriteData + 1)
        #expect(over.count + 1 <= FrameLimits.maxFrameLength)
        expectMalformed(rawFrame(type: 0x20, body: over), type: 0x20, "WRITE of 4 MiB + 1")
    }

    @Test(arguments: [UInt32(0), 65_537, .max])
    func hashRequestCount(_ count: UInt32) throws {
        // handle u32, offset u64, chunkSize u32, then count.
        let request = patched(try body(of: FrameSamples.hashRequest), at: 16, bigEndian(count))
        expectMalformed(rawFrame(type: 0x31, body: request), type: 0x31, "HASH_REQUEST count \(count)")
    }

    @Test func hashesCountAboveTheMaximum() throws {
        expectMalformed(rawFrame(type: 0x32, body: [0, 0, 0, 1] + Array(repeating: 0, count: 8) + [0, 0, 0x10, 0] + bigEndian(UInt32(65_537))), type: 0x32, "HASHES count 65537")
        // A count the digests do not fill.
        expectMalformed(rawFrame(type: 0x32, body: [0, 0, 0, 1] + Array(repeating: 0, count: 8) + [0, 0, 0x10, 0] + bigEndian(UInt32(2)) + Array(repeating: 0, count: 63)), type: 0x32, "HASHES short")
    }

    @Test(arguments: [UInt8(4), 0x80, 0xFF])
    func pairStateState(_ state: UInt8) throws {
        expectMalformed(rawFrame(type: 0x11, body: patched(try body(of: FrameSamples.pairState), at: 4, [state])), type: 0x11, "state \(state)")
    }

    @Test func decoderStopsAtTheFirstBadFrame() throws {
        // A good frame, then a bad one: the good one is delivered, then the error.
        var buffer = try encoded(FrameSamples.ack)
        buffer.writeBytes(rawFrame(type: 0x22, body: [0, 0, 0, 0] + Array(repeating: 0, count: 8)))
        var decoder = FrameDecoder()
        #expect(try decoder.decodeOne(&buffer) == FrameSamples.ack)
        #expect(throws: FrameError.self) { try decoder.decodeOne(&buffer) }
    }

    func bigEndian(_ value: UInt32) -> [UInt8] {
        [UInt8(value >> 24), UInt8(truncatingIfNeeded: value >> 16), UInt8(truncatingIfNeeded: value >> 8), UInt8(truncatingIfNeeded: value)]
    }
}

/// Records what reaches the end of the pipeline and passes errors on.
final class ErrorRecorder: ChannelInboundHandler {
    typealias InboundIn = Frame
    var frames: [Frame] = []
    var errors: [any Error] = []
    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        frames.append(unwrapInboundIn(data))
    }
    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        errors.append(error)
        context.fireErrorCaught(error)
    }
}

@Suite("Frame codec: errors through a channel")
struct FrameCodecChannelErrorTests {
    func makeChannel() throws -> (EmbeddedChannel, ErrorRecorder) {
        let recorder = ErrorRecorder()
        let channel = EmbeddedChannel()
        try channel.pipeline.syncOperations.addHandler(ByteToMessageHandler(FrameDecoder()))
        try channel.pipeline.syncOperations.addHandler(recorder)
        return (channel, recorder)
    }

    @Test func tooLargeHeaderAlone() throws {
        let (channel, recorder) = try makeChannel()
        var header = ByteBuffer()
        header.writeInteger(UInt32(FrameLimits.maxFrameLength + 1))
        #expect(throws: FrameError.tooLarge(length: UInt32(FrameLimits.maxFrameLength + 1))) { try channel.writeInbound(header) }
        #expect(recorder.errors.count == 1)
        #expect(recorder.errors.first as? FrameError == .tooLarge(length: UInt32(FrameLimits.maxFrameLength + 1)))
        _ = try? channel.finish()
    }

    @Test func lengthZero() throws {
        let (channel, recorder) = try makeChannel()
        #expect(throws: FrameError.empty) { try channel.writeInbound(ByteBuffer(bytes: [0, 0, 0, 0])) }
        #expect(recorder.errors.first as? FrameError == .empty)
        _ = try? channel.finish()
    }

    @Test func unknownTypeAfterAGoodFrame() throws {
        let (channel, recorder) = try makeChannel()
        var stream = try encoded(FrameSamples.heartbeat)
        stream.writeBytes(rawFrame(type: 0x99, body: []))
        #expect(throws: FrameError.unknownType(0x99)) { try channel.writeInbound(stream) }
        #expect(recorder.frames == [FrameSamples.heartbeat])
        #expect(recorder.errors.first as? FrameError == .unknownType(0x99))
        _ = try? channel.finish()
    }

    @Test func malformedDripFed() throws {
        let (channel, recorder) = try makeChannel()
        let bytes = rawFrame(type: 0x13, body: [0, 0, 0, 0])  // CLOSE_PAIR handle 0
        for byte in bytes.dropLast() {
            try channel.writeInbound(ByteBuffer(bytes: [byte]))
        }
        #expect(recorder.errors.isEmpty)
        let error = #expect(throws: FrameError.self) { try channel.writeInbound(ByteBuffer(bytes: [bytes.last!])) }
        guard case .malformed(type: 0x13, _)? = error else {
            Issue.record("expected .malformed(type: 0x13), got \(String(describing: error))")
            return
        }
        #expect(recorder.errors.count == 1)
        _ = try? channel.finish()
    }
}

@Suite("Frame codec: error codes")
struct FrameCodecErrorCodeTests {
    /// docs/PROTOCOL.md §9.
    static let documented: [(UInt16, String, ErrorCode)] = [
        (1, "malformed-frame", .malformedFrame), (2, "frame-too-large", .frameTooLarge),
        (3, "unsupported-version", .unsupportedVersion), (4, "auth-failed", .authFailed),
        (5, "not-authenticated", .notAuthenticated), (6, "unexpected-frame", .unexpectedFrame),
        (7, "timeout", .timeout), (8, "shutting-down", .shuttingDown),
        (10, "target-refused", .targetRefused), (11, "pair-conflict", .pairConflict),
        (12, "resync-required", .resyncRequired), (13, "checksum-mismatch", .checksumMismatch),
        (14, "sequence-gap", .sequenceGap), (15, "write-out-of-range", .writeOutOfRange),
        (16, "pair-taken-over", .pairTakenOver), (17, "io-error", .ioError), (18, "bad-request", .badRequest),
        (19, "failed-over", .failedOver), (20, "retention-full", .retentionFull),
    ]

    @Test func everyDocumentedCodeRoundTrips() throws {
        for (code, name, errorCode) in Self.documented {
            #expect(ErrorCode(code: code) == errorCode)
            #expect(errorCode.code == code)
            #expect(errorCode.description == name)
            for frame in [Frame.error(code: errorCode, message: name), .pairError(handle: 9, code: errorCode, message: name)] {
                var buffer = try encoded(frame)
                var decoder = FrameDecoder()
                #expect(try decoder.decodeOne(&buffer) == frame)
            }
        }
    }

    @Test(arguments: [UInt16(0), 9, 21, 100, 0x8000, .max])
    func unknownCodesArePreserved(_ code: UInt16) throws {
        let errorCode = ErrorCode(code: code)
        #expect(errorCode == .unknown(code))
        #expect(errorCode.code == code)
        #expect(errorCode.description == "error-\(code)")
        for frame in [Frame.error(code: errorCode, message: "from a newer peer"), .pairError(handle: 1, code: errorCode, message: "")] {
            var buffer = try encoded(frame)
            #expect(buffer.getInteger(at: 5 + (frame.type == 0x12 ? 4 : 0), as: UInt16.self) == code)
            var decoder = FrameDecoder()
            #expect(try decoder.decodeOne(&buffer) == frame)
        }
    }

    @Test func frameErrorsMapToTheirCodes() {
        #expect(FrameError.empty.code == .frameTooLarge)
        #expect(FrameError.tooLarge(length: 5_000_000).code == .frameTooLarge)
        #expect(FrameError.unknownType(0x99).code == .malformedFrame)
        #expect(FrameError.malformed(type: 0x01, reason: "x").code == .malformedFrame)
    }
}
