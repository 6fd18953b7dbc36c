import NIOCore

/// Every message of the replication protocol (docs/PROTOCOL.md §4), decoded.
public enum Frame: Sendable, Equatable {
    case hello(Hello)
    case challenge(Challenge)
    case proof(mac: [UInt8])
    case welcome(mac: [UInt8], heartbeatMillis: UInt32, maxWrite: UInt32)
    case error(code: ErrorCode, message: String)
    case heartbeat(unixMillis: UInt64)
    case openPair(OpenPair)
    case pairState(PairStateReport)
    case pairError(handle: UInt32, code: ErrorCode, message: String)
    case closePair(handle: UInt32)
    case write(Write)
    case tag(TagFrame)
    case ack(handle: UInt32, durableSeq: UInt64)
    case resyncBegin(handle: UInt32, seq: UInt64)
    case hashRequest(handle: UInt32, offset: UInt64, chunkSize: UInt32, count: UInt32)
    case hashes(Hashes)
    case resyncMark(handle: UInt32, seq: UInt64, through: UInt64)
    case resyncDone(handle: UInt32, seq: UInt64)

    public struct Hello: Sendable, Equatable {
        public static let magic: UInt32 = 0x4D54_4147  // "MTAG"
        public var minVersion: UInt16
        public var maxVersion: UInt16
        public var nonce: [UInt8]
        public var senderName: String
        public init(minVersion: UInt16, maxVersion: UInt16, nonce: [UInt8], senderName: String) {
            self.minVersion = minVersion; self.maxVersion = maxVersion; self.nonce = nonce; self.senderName = senderName
        }
    }

    public struct Challenge: Sendable, Equatable {
        public var version: UInt16
        public var nonce: [UInt8]
        public var kdf: String
        public var n: UInt64
        public var r: UInt32
        public var p: UInt32
        public var salt: [UInt8]
        public var serverName: String
        public init(version: UInt16, nonce: [UInt8], kdf: String, n: UInt64, r: UInt32, p: UInt32, salt: [UInt8], serverName: String) {
            self.version = version; self.nonce = nonce; self.kdf = kdf; self.n = n; self.r = r; self.p = p
            self.salt = salt; self.serverName = serverName
        }
    }

    public struct OpenPair: Sendable, Equatable {
        public var handle: UInt32
        public var pairID: String
        public var groupID: String
        public var target: String
        public var sourceSize: UInt64
        public init(handle: UInt32, pairID: String, groupID: String, target: String, sourceSize: UInt64) {
            self.handle = handle; self.pairID = pairID; self.groupID = groupID; self.target = target; self.sourceSize = sourceSize
        }
    }

    public struct PairStateReport: Sendable, Equatable {
        public var handle: UInt32
        public var state: WireState
        public var durableSeq: UInt64
        public var resyncOffset: UInt64
        public var targetSize: UInt64
        public var reason: String
        public init(handle: UInt32, state: WireState, durableSeq: UInt64, resyncOffset: UInt64, targetSize: UInt64, reason: String) {
            self.handle = handle; self.state = state; self.durableSeq = durableSeq; self.resyncOffset = resyncOffset
            self.targetSize = targetSize; self.reason = reason
        }
    }

    /// `PAIR_STATE.state` on the wire.
    public enum WireState: UInt8, Sendable, Equatable {
        case new = 0, resyncing = 1, inSync = 2, resyncRequired = 3
    }

    public struct Write: Sendable, Equatable {
        public var handle: UInt32
        public var seq: UInt64
        public var offset: UInt64
        public var sha256: [UInt8]
        public var data: ByteBuffer
        public init(handle: UInt32, seq: UInt64, offset: UInt64, sha256: [UInt8], data: ByteBuffer) {
            self.handle = handle; self.seq = seq; self.offset = offset; self.sha256 = sha256; self.data = data
        }
    }

    public struct TagFrame: Sendable, Equatable {
        public var handle: UInt32
        public var seq: UInt64
        public var tagID: UInt64
        public var kind: UInt8
        public var sourceTime: UInt64
        public var name: String
        public init(handle: UInt32, seq: UInt64, tagID: UInt64, kind: UInt8, sourceTime: UInt64, name: String) {
            self.handle = handle; self.seq = seq; self.tagID = tagID; self.kind = kind; self.sourceTime = sourceTime; self.name = name
        }
    }

    public struct Hashes: Sendable, Equatable {
        public var handle: UInt32
        public var offset: UInt64
        public var chunkSize: UInt32
        /// `count × 32` bytes of SHA-256, chunk by chunk.
        public var digests: [UInt8]
        public var count: Int { digests.count / 32 }
        public init(handle: UInt32, offset: UInt64, chunkSize: UInt32, digests: [UInt8]) {
            self.handle = handle; self.offset = offset; self.chunkSize = chunkSize; self.digests = digests
        }
        public func digest(_ i: Int) -> ArraySlice<UInt8> { digests[(i * 32)..<(i * 32 + 32)] }
    }

    /// The frame's type byte.
    public var type: UInt8 {
        switch self {
        case .hello: 0x01
        case .challenge: 0x02
        case .proof: 0x03
        case .welcome: 0x04
        case .error: 0x05
        case .heartbeat: 0x06
        case .openPair: 0x10
        case .pairState: 0x11
        case .pairError: 0x12
        case .closePair: 0x13
        case .write: 0x20
        case .tag: 0x21
        case .ack: 0x22
        case .resyncBegin: 0x30
        case .hashRequest: 0x31
        case .hashes: 0x32
        case .resyncMark: 0x33
        case .resyncDone: 0x34
        }
    }

    /// The pair a frame belongs to, for frames scoped to one pair.
    public var handle: UInt32? {
        switch self {
        case .openPair(let o): o.handle
        case .pairState(let s): s.handle
        case .pairError(let h, _, _), .closePair(let h), .ack(let h, _), .resyncBegin(let h, _),
            .hashRequest(let h, _, _, _), .resyncMark(let h, _, _), .resyncDone(let h, _):
            h
        case .write(let w): w.handle
        case .tag(let t): t.handle
        case .hashes(let h): h.handle
        case .hello, .challenge, .proof, .welcome, .error, .heartbeat: nil
        }
    }
}

/// Error codes of `ERROR` and `PAIR_ERROR` (docs/PROTOCOL.md §9). Unknown codes from a newer peer
/// decode as `.unknown` so the message still reaches the log.
public enum ErrorCode: Sendable, Equatable, Hashable, CustomStringConvertible {
    case malformedFrame, frameTooLarge, unsupportedVersion, authFailed, notAuthenticated, unexpectedFrame
    case timeout, shuttingDown
    case targetRefused, pairConflict, resyncRequired, checksumMismatch, sequenceGap, writeOutOfRange
    case pairTakenOver, ioError, badRequest, failedOver, retentionFull
    case unknown(UInt16)

    static let table: [(ErrorCode, UInt16, String)] = [
        (.malformedFrame, 1, "malformed-frame"), (.frameTooLarge, 2, "frame-too-large"),
        (.unsupportedVersion, 3, "unsupported-version"), (.authFailed, 4, "auth-failed"),
        (.notAuthenticated, 5, "not-authenticated"), (.unexpectedFrame, 6, "unexpected-frame"),
        (.timeout, 7, "timeout"), (.shuttingDown, 8, "shutting-down"),
        (.targetRefused, 10, "target-refused"), (.pairConflict, 11, "pair-conflict"),
        (.resyncRequired, 12, "resync-required"), (.checksumMismatch, 13, "checksum-mismatch"),
        (.sequenceGap, 14, "sequence-gap"), (.writeOutOfRange, 15, "write-out-of-range"),
        (.pairTakenOver, 16, "pair-taken-over"), (.ioError, 17, "io-error"), (.badRequest, 18, "bad-request"),
        (.failedOver, 19, "failed-over"), (.retentionFull, 20, "retention-full"),
    ]

    public init(code: UInt16) {
        self = Self.table.first { $0.1 == code }?.0 ?? .unknown(code)
    }

    public var code: UInt16 {
        if case .unknown(let c) = self { return c }
        return Self.table.first { $0.0 == self }!.1
    }

    public var description: String {
        if case .unknown(let c) = self { return "error-\(c)" }
        return Self.table.first { $0.0 == self }!.2
    }
}
