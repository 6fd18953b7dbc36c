import NIOCore
import Synchronization

/// Limits of the framing layer (docs/PROTOCOL.md §2).
public enum FrameLimits {
    /// Largest `length` field: type byte + body.
    public static let maxFrameLength = 4 * 1024 * 1024 + 256
    /// Largest `length` field a master target reads before it has sent WELCOME: HELLO (at most
    /// 1,067 bytes with a 1,024-byte sender name), PROOF, HEARTBEAT and ERROR fit; an
    /// unauthenticated peer cannot make it buffer more than this per connection.
    public static let maxHandshakeFrameLength = 4096
    /// Largest WRITE payload.
    public static let maxWriteData = 4 * 1024 * 1024
    /// Longest `str` field in bytes.
    public static let maxString = 1024
    /// Most chunks in one HASH_REQUEST / HASHES.
    public static let maxHashCount = 65_536
}

/// Why a frame could not be decoded. Each maps to the error code the receiver sends before it
/// closes the connection.
public enum FrameError: Error, Equatable, CustomStringConvertible {
    /// `limit` is the maximum in force: smaller before WELCOME (`FrameLimits.maxHandshakeFrameLength`).
    case tooLarge(length: UInt32, limit: Int = FrameLimits.maxFrameLength)
    case empty
    case unknownType(UInt8)
    case malformed(type: UInt8, reason: String)

    public var code: ErrorCode {
        switch self {
        case .tooLarge, .empty: .frameTooLarge
        case .unknownType, .malformed: .malformedFrame
        }
    }

    public var description: String {
        switch self {
        case .tooLarge(let length, let limit) where limit < FrameLimits.maxFrameLength:
            "frame length \(length) exceeds the maximum \(limit) before the handshake is complete"
        case .tooLarge(let length, let limit): "frame length \(length) exceeds the maximum \(limit)"
        case .empty: "frame length 0"
        case .unknownType(let t): "unknown frame type 0x\(String(t, radix: 16))"
        case .malformed(let t, let reason): "malformed frame of type 0x\(String(t, radix: 16)): \(reason)"
        }
    }
}

/// Splits the byte stream into frames: `.waitingForHeader` until 4 bytes of length are there,
/// then `.waitingForFrame` until the whole frame is; a length outside the limits fails at once,
/// before any of the frame is buffered.
///
/// The maximum length is read from `limit` at each header, so a master target can start a
/// connection at `FrameLimits.maxHandshakeFrameLength` and raise it when it sends WELCOME.
public struct FrameDecoder: ByteToMessageDecoder {
    public typealias InboundOut = Frame

    enum State {
        case waitingForHeader
        case waitingForFrame(length: Int)
    }

    var state = State.waitingForHeader
    let limit: FrameLengthLimit?

    /// A decoder with the full limit, `FrameLimits.maxFrameLength`.
    public init() { limit = nil }

    /// A decoder whose maximum is whatever `limit` holds when a header arrives.
    public init(limit: FrameLengthLimit) { self.limit = limit }

    var maxLength: Int { limit?.value ?? FrameLimits.maxFrameLength }

    public mutating func decode(context: ChannelHandlerContext, buffer: inout ByteBuffer) throws -> DecodingState {
        guard let frame = try decodeOne(&buffer) else { return .needMoreData }
        context.fireChannelRead(Self.wrapInboundOut(frame))
        return .continue
    }

    public mutating func decodeLast(context: ChannelHandlerContext, buffer: inout ByteBuffer, seenEOF: Bool) throws -> DecodingState {
        // A partial frame at EOF is simply dropped with the connection: nothing of it was acted on.
        try decode(context: context, buffer: &buffer)
    }

    /// One frame from `buffer`, or nil when more bytes are needed. Pure, so the fuzz target and
    /// the channel handler share it.
    public mutating func decodeOne(_ buffer: inout ByteBuffer) throws -> Frame? {
        if case .waitingForHeader = state {
            guard let length = buffer.readInteger(as: UInt32.self) else { return nil }
            guard length > 0 else { throw FrameError.empty }
            let maxLength = self.maxLength
            guard length <= maxLength else { throw FrameError.tooLarge(length: length, limit: maxLength) }
            state = .waitingForFrame(length: Int(length))
        }
        guard case .waitingForFrame(let length) = state, var body = buffer.readSlice(length: length) else { return nil }
        state = .waitingForHeader
        let type = body.readInteger(as: UInt8.self)!
        return try Frame.decode(type: type, body: &body)
    }
}

/// The maximum frame length of one connection's decoder, shared with the code that raises it:
/// written from the connection's task, read on its event loop.
public final class FrameLengthLimit: Sendable {
    private let stored: Atomic<Int>

    public init(_ value: Int) { stored = Atomic(value) }

    public var value: Int { stored.load(ordering: .acquiring) }

    /// Takes effect for the next header the decoder reads.
    public func raise(to value: Int) { stored.store(value, ordering: .releasing) }
}

/// Writes frames with their length prefix.
public struct FrameEncoder: MessageToByteEncoder {
    public typealias OutboundIn = Frame
    public init() {}
    public func encode(data: Frame, out: inout ByteBuffer) throws {
        data.encode(into: &out)
    }
}

extension Frame {
    /// Appends the whole frame, length prefix included. A frame that would not decode as itself
    /// (a 32-byte field of another length, an oversized WRITE or salt) is a programming error.
    public func encode(into out: inout ByteBuffer) {
        switch self {
        case .hello(let h): precondition(h.nonce.count == 32, "HELLO nonce must be 32 bytes")
        case .challenge(let c): precondition(c.nonce.count == 32 && c.salt.count <= Int(UInt16.max), "CHALLENGE nonce/salt size")
        case .proof(let mac), .welcome(let mac, _, _): precondition(mac.count == 32, "MAC must be 32 bytes")
        case .write(let w): precondition(w.sha256.count == 32 && (1...FrameLimits.maxWriteData).contains(w.data.readableBytes), "WRITE checksum/data size")
        case .hashes(let h): precondition(h.digests.count % 32 == 0 && h.count <= FrameLimits.maxHashCount, "HASHES size")
        default: break
        }
        let start = out.writerIndex
        out.writeInteger(UInt32(0))
        out.writeInteger(type)
        switch self {
        case .hello(let h):
            out.writeInteger(Hello.magic)
            out.writeInteger(h.minVersion)
            out.writeInteger(h.maxVersion)
            out.writeBytes(h.nonce)
            out.writeWireString(h.senderName)
        case .challenge(let c):
            out.writeInteger(c.version)
            out.writeBytes(c.nonce)
            out.writeWireString(c.kdf)
            out.writeInteger(c.n)
            out.writeInteger(c.r)
            out.writeInteger(c.p)
            out.writeInteger(UInt16(c.salt.count))
            out.writeBytes(c.salt)
            out.writeWireString(c.serverName)
        case .proof(let mac):
            out.writeBytes(mac)
        case .welcome(let mac, let heartbeat, let maxWrite):
            out.writeBytes(mac)
            out.writeInteger(heartbeat)
            out.writeInteger(maxWrite)
        case .error(let code, let message):
            out.writeInteger(code.code)
            out.writeWireString(message)
        case .heartbeat(let millis):
            out.writeInteger(millis)
        case .openPair(let o):
            out.writeInteger(o.handle)
            out.writeWireString(o.pairID)
            out.writeWireString(o.groupID)
            out.writeWireString(o.target)
            out.writeInteger(o.sourceSize)
        case .pairState(let s):
            out.writeInteger(s.handle)
            out.writeInteger(s.state.rawValue)
            out.writeInteger(s.durableSeq)
            out.writeInteger(s.resyncOffset)
            out.writeInteger(s.targetSize)
            out.writeWireString(s.reason)
        case .pairError(let handle, let code, let message):
            out.writeInteger(handle)
            out.writeInteger(code.code)
            out.writeWireString(message)
        case .closePair(let handle):
            out.writeInteger(handle)
        case .write(let w):
            out.writeInteger(w.handle)
            out.writeInteger(w.seq)
            out.writeInteger(w.offset)
            out.writeBytes(w.sha256)
            var data = w.data
            out.writeBuffer(&data)
        case .tag(let t):
            out.writeInteger(t.handle)
            out.writeInteger(t.seq)
            out.writeInteger(t.tagID)
            out.writeInteger(t.kind)
            out.writeInteger(t.sourceTime)
            out.writeWireString(t.name)
        case .ack(let handle, let durable):
            out.writeInteger(handle)
            out.writeInteger(durable)
        case .resyncBegin(let handle, let seq), .resyncDone(let handle, let seq):
            out.writeInteger(handle)
            out.writeInteger(seq)
        case .hashRequest(let handle, let offset, let chunkSize, let count):
            out.writeInteger(handle)
            out.writeInteger(offset)
            out.writeInteger(chunkSize)
            out.writeInteger(count)
        case .hashes(let h):
            out.writeInteger(h.handle)
            out.writeInteger(h.offset)
            out.writeInteger(h.chunkSize)
            out.writeInteger(UInt32(h.count))
            out.writeBytes(h.digests)
        case .resyncMark(let handle, let seq, let through):
            out.writeInteger(handle)
            out.writeInteger(seq)
            out.writeInteger(through)
        }
        out.setInteger(UInt32(out.writerIndex - start - 4), at: start)
    }

    /// Decodes one frame body (the bytes after the type byte). Every field must be present and
    /// nothing may be left over.
    public static func decode(type: UInt8, body: inout ByteBuffer) throws -> Frame {
        var r = BodyReader(type: type, buffer: body)
        let frame: Frame
        switch type {
        case 0x01:
            let magic: UInt32 = try r.int()
            guard magic == Hello.magic else { throw r.fail("bad magic 0x\(String(magic, radix: 16))") }
            frame = .hello(Hello(minVersion: try r.int(), maxVersion: try r.int(), nonce: try r.bytes(32), senderName: try r.string()))
        case 0x02:
            let version: UInt16 = try r.int()
            let nonce = try r.bytes(32)
            let kdf = try r.string()
            let n: UInt64 = try r.int()
            let rr: UInt32 = try r.int()
            let p: UInt32 = try r.int()
            let saltCount: UInt16 = try r.int()
            let salt = try r.bytes(Int(saltCount))
            frame = .challenge(Challenge(version: version, nonce: nonce, kdf: kdf, n: n, r: rr, p: p, salt: salt, serverName: try r.string()))
        case 0x03:
            frame = .proof(mac: try r.bytes(32))
        case 0x04:
            frame = .welcome(mac: try r.bytes(32), heartbeatMillis: try r.int(), maxWrite: try r.int())
        case 0x05:
            frame = .error(code: ErrorCode(code: try r.int()), message: try r.string())
        case 0x06:
            frame = .heartbeat(unixMillis: try r.int())
        case 0x10:
            frame = .openPair(OpenPair(handle: try r.handle(), pairID: try r.string(), groupID: try r.string(), target: try r.string(), sourceSize: try r.int()))
        case 0x11:
            let handle = try r.handle()
            let raw: UInt8 = try r.int()
            guard let state = WireState(rawValue: raw) else { throw r.fail("unknown pair state \(raw)") }
            frame = .pairState(PairStateReport(handle: handle, state: state, durableSeq: try r.int(), resyncOffset: try r.int(), targetSize: try r.int(), reason: try r.string()))
        case 0x12:
            frame = .pairError(handle: try r.handle(), code: ErrorCode(code: try r.int()), message: try r.string())
        case 0x13:
            frame = .closePair(handle: try r.handle())
        case 0x20:
            let handle = try r.handle()
            let seq: UInt64 = try r.int()
            let offset: UInt64 = try r.int()
            let sha = try r.bytes(32)
            let data = r.rest()
            guard data.readableBytes > 0 else { throw r.fail("WRITE without data") }
            guard data.readableBytes <= FrameLimits.maxWriteData else { throw r.fail("WRITE of \(data.readableBytes) bytes exceeds \(FrameLimits.maxWriteData)") }
            frame = .write(Write(handle: handle, seq: try r.seq(seq), offset: offset, sha256: sha, data: data))
        case 0x21:
            let handle = try r.handle()
            let seq = try r.seq(try r.int())
            let tagID: UInt64 = try r.int()
            let kind: UInt8 = try r.int()
            guard kind == 1 || kind == 2 else { throw r.fail("unknown tag kind \(kind)") }
            frame = .tag(TagFrame(handle: handle, seq: seq, tagID: tagID, kind: kind, sourceTime: try r.int(), name: try r.string()))
        case 0x22:
            frame = .ack(handle: try r.handle(), durableSeq: try r.int())
        case 0x30:
            frame = .resyncBegin(handle: try r.handle(), seq: try r.seq(try r.int()))
        case 0x31:
            let handle = try r.handle()
            let offset: UInt64 = try r.int()
            let chunkSize: UInt32 = try r.int()
            let count: UInt32 = try r.int()
            guard count >= 1, count <= FrameLimits.maxHashCount else { throw r.fail("hash count \(count) outside 1...\(FrameLimits.maxHashCount)") }
            frame = .hashRequest(handle: handle, offset: offset, chunkSize: chunkSize, count: count)
        case 0x32:
            let handle = try r.handle()
            let offset: UInt64 = try r.int()
            let chunkSize: UInt32 = try r.int()
            let count: UInt32 = try r.int()
            guard count <= FrameLimits.maxHashCount else { throw r.fail("hash count \(count) above \(FrameLimits.maxHashCount)") }
            frame = .hashes(Hashes(handle: handle, offset: offset, chunkSize: chunkSize, digests: try r.bytes(Int(count) * 32)))
        case 0x33:
            frame = .resyncMark(handle: try r.handle(), seq: try r.seq(try r.int()), through: try r.int())
        case 0x34:
            frame = .resyncDone(handle: try r.handle(), seq: try r.seq(try r.int()))
        default:
            throw FrameError.unknownType(type)
        }
        try r.finish()
        return frame
    }
}

/// Reads typed fields from one frame body, turning every shortfall into `FrameError.malformed`.
struct BodyReader {
    let type: UInt8
    var buffer: ByteBuffer

    func fail(_ reason: String) -> FrameError { .malformed(type: type, reason: reason) }

    mutating func int<T: FixedWidthInteger>(_: T.Type = T.self) throws -> T {
        guard let v = buffer.readInteger(as: T.self) else { throw fail("body ends inside a \(T.bitWidth)-bit field") }
        return v
    }

    mutating func bytes(_ count: Int) throws -> [UInt8] {
        guard let b = buffer.readBytes(length: count) else { throw fail("body ends inside a \(count)-byte field") }
        return b
    }

    mutating func string() throws -> String {
        let count: UInt16 = try int()
        guard count <= FrameLimits.maxString else { throw fail("string of \(count) bytes exceeds \(FrameLimits.maxString)") }
        guard let bytes = buffer.readBytes(length: Int(count)) else { throw fail("body ends inside a string") }
        guard let s = String(validating: bytes, as: UTF8.self) else { throw fail("string is not UTF-8") }
        return s
    }

    mutating func handle() throws -> UInt32 {
        let h: UInt32 = try int()
        guard h != 0 else { throw fail("pair handle 0") }
        return h
    }

    func seq(_ s: UInt64) throws -> UInt64 {
        guard s != 0 else { throw fail("sequence number 0") }
        return s
    }

    mutating func rest() -> ByteBuffer {
        buffer.readSlice(length: buffer.readableBytes)!
    }

    func finish() throws {
        guard buffer.readableBytes == 0 else { throw fail("\(buffer.readableBytes) bytes left over") }
    }
}

extension ByteBuffer {
    mutating func writeWireString(_ s: String) {
        var s = s
        while s.utf8.count > FrameLimits.maxString { s.removeLast() }  // cut whole characters: stays UTF-8
        writeInteger(UInt16(s.utf8.count))
        writeString(s)
    }
}
