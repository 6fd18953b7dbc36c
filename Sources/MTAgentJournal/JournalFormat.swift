import CMTShim
import MTAgentCore
import Crypto
import Foundation
import Glibc

/// Record types of the undo journal (docs/JOURNAL.md, "Records").
enum RecordType: UInt8 {
    case undo = 1
    case tag = 2
    case commit = 3
    case abort = 4
    /// Fills the rest of a 4 KiB block before a sync (the writer appends whole blocks with O_DIRECT);
    /// readers skip it.
    case pad = 5
}

enum JournalFormat {
    static let magic: [UInt8] = Array("MTJR".utf8)
    /// magic 4 + type 1 + flags 1 + reserved 2 + payload length 4 + SHA-256 32.
    static let headerSize = 44
    /// Larger payloads are never written (UNDO data is split at `maxUndoData`), so a bigger length is damage.
    static let maxPayload = 16 << 20
    static let maxUndoData = 1 << 20
    static let blockSize: UInt64 = 4096

    static func segmentName(_ number: UInt32) -> String {
        let digits = String(number)
        return "seg-" + String(repeating: "0", count: max(0, 8 - digits.count)) + digits + ".mtj"
    }

    static func segmentPath(_ directory: String, _ number: UInt32) -> String {
        directory + "/" + segmentName(number)
    }

    /// The segment numbers present in a pair directory, ascending; they must be contiguous.
    static func segments(in directory: String) throws -> [UInt32] {
        let names: [String]
        do {
            names = try FileManager.default.contentsOfDirectory(atPath: directory)
        } catch {
            throw JournalError.badSegmentSet(path: directory, detail: "cannot list: \(error)")
        }
        var numbers: [UInt32] = []
        for name in names where name.hasPrefix("seg-") && name.hasSuffix(".mtj") {
            let digits = name.dropFirst(4).dropLast(4)
            guard digits.count == 8, digits.allSatisfy(\.isASCII), let number = UInt32(digits), number > 0 else {
                throw JournalError.badSegmentSet(path: directory, detail: "unexpected segment file name \(name)")
            }
            numbers.append(number)
        }
        numbers.sort()
        for (previous, next) in zip(numbers, numbers.dropFirst()) where next != previous + 1 {
            throw JournalError.badSegmentSet(
                path: directory, detail: "segment \(previous + 1) is missing between \(previous) and \(next)")
        }
        return numbers
    }

    /// Header flag: the checksum field holds a CRC-32C (big-endian, bytes 12..<16, the other 28 bytes
    /// zero). Without it the field is a SHA-256, as every record had before the flag existed.
    static let flagCRC32C: UInt8 = 1

    /// CRC-32C of header bytes 4..<12 (type, flags, reserved, payload length) then the payload.
    static func crc32c(header: UnsafeRawBufferPointer, payload: UnsafeRawBufferPointer) -> UInt32 {
        let head = mt_crc32c(0, header.baseAddress, header.count)
        return payload.isEmpty ? head : mt_crc32c(head, payload.baseAddress, payload.count)
    }

    /// True when the header's checksum field matches header bytes 4..<12 and the payload, by the
    /// algorithm the header's flags name.
    static func checksumMatches(header: ArraySlice<UInt8>, payload: ArraySlice<UInt8>) -> Bool {
        let h = Array(header)
        guard h.count == headerSize else { return false }
        if h[5] & flagCRC32C == 0 {
            var hasher = SHA256()
            hasher.update(data: h[4..<12])
            hasher.update(data: payload)
            return Array(hasher.finalize()) == Array(h[12..<44])
        }
        guard h[16..<44].allSatisfy({ $0 == 0 }) else { return false }
        let sum = h[4..<12].withUnsafeBytes { head in payload.withUnsafeBytes { crc32c(header: head, payload: $0) } }
        return sum == h.readBE(UInt32.self, at: 12)
    }

    /// Writes a record's header into `header` (44 bytes) for a payload already in `payload`.
    static func writeHeader(_ header: UnsafeMutableRawBufferPointer, type: RecordType, payload: UnsafeRawBufferPointer) {
        header.copyBytes(from: magic)
        header[4] = type.rawValue
        header[5] = flagCRC32C
        header[6] = 0
        header[7] = 0
        header.storeBytes(of: UInt32(payload.count).bigEndian, toByteOffset: 8, as: UInt32.self)
        let sum = crc32c(header: UnsafeRawBufferPointer(rebasing: header[4..<12]), payload: payload)
        header.storeBytes(of: sum.bigEndian, toByteOffset: 12, as: UInt32.self)
        for i in 16..<headerSize { header[i] = 0 }
    }

    static func encode(type: RecordType, payload: [UInt8]) -> [UInt8] {
        var bytes = [UInt8](repeating: 0, count: headerSize + payload.count)
        bytes.withUnsafeMutableBytes { raw in
            payload.withUnsafeBytes { body in
                if !body.isEmpty { (raw.baseAddress! + headerSize).copyMemory(from: body.baseAddress!, byteCount: body.count) }
                writeHeader(UnsafeMutableRawBufferPointer(rebasing: raw[..<headerSize]), type: type, payload: body)
            }
        }
        return bytes
    }

    /// Checks a header (not the checksum). Returns nil when valid, else what is wrong.
    static func headerProblem(_ header: ArraySlice<UInt8>, bytesAvailable: UInt64) -> String? {
        let h = Array(header)
        guard h.count == headerSize else { return "truncated header (\(h.count) of \(headerSize) bytes)" }
        guard Array(h[0..<4]) == magic else { return "bad magic" }
        guard RecordType(rawValue: h[4]) != nil else { return "unknown record type \(h[4])" }
        guard h[5] & ~flagCRC32C == 0, h[6] == 0, h[7] == 0 else { return "unknown flags or nonzero reserved bytes" }
        let length = UInt64(h.readBE(UInt32.self, at: 8))
        guard length <= UInt64(maxPayload) else { return "payload length \(length) exceeds the maximum" }
        guard UInt64(headerSize) + length <= bytesAvailable else {
            return "payload of \(length) bytes runs past the end of the segment"
        }
        return nil
    }
}

/// One record as read from a segment.
struct RawRecord {
    var position: JournalPosition
    var type: RecordType
    var payload: [UInt8]
    var size: UInt64 { UInt64(JournalFormat.headerSize + payload.count) }
}

struct UndoRecord {
    static let fixedSize = 20
    var seq: UInt64
    var offset: UInt64
    var length: UInt32

    /// The fixed fields (the first `fixedSize` bytes of the payload), written into `payload`.
    func encodeFixed(into payload: UnsafeMutableRawBufferPointer) {
        payload.storeBytes(of: seq.bigEndian, toByteOffset: 0, as: UInt64.self)
        payload.storeBytes(of: offset.bigEndian, toByteOffset: 8, as: UInt64.self)
        payload.storeBytes(of: length.bigEndian, toByteOffset: 16, as: UInt32.self)
    }

    func encode(data: ArraySlice<UInt8>) -> [UInt8] {
        var p: [UInt8] = []
        p.reserveCapacity(Self.fixedSize + data.count)
        p.appendBE(seq); p.appendBE(offset); p.appendBE(length)
        p.append(contentsOf: data)
        return p
    }

    init(seq: UInt64, offset: UInt64, length: UInt32) {
        self.seq = seq; self.offset = offset; self.length = length
    }

    init?(payload: [UInt8]) {
        guard payload.count >= Self.fixedSize else { return nil }
        seq = payload.readBE(UInt64.self, at: 0)
        offset = payload.readBE(UInt64.self, at: 8)
        length = payload.readBE(UInt32.self, at: 16)
        guard payload.count == Self.fixedSize + Int(length) else { return nil }
    }
}

struct TagRecord {
    var seq: UInt64
    var tagID: UInt64
    var kind: TagKind
    var sourceTime: UInt64
    /// The pair was in sync when the tag was applied; only such tags can make a recovery point.
    var inSync: Bool
    var name: String

    func encode() -> [UInt8] {
        var p: [UInt8] = []
        p.appendBE(seq); p.appendBE(tagID); p.append(kind.rawValue); p.appendBE(sourceTime)
        p.append(inSync ? 1 : 0)
        p.appendString(name)
        return p
    }

    init(seq: UInt64, tagID: UInt64, kind: TagKind, sourceTime: UInt64, inSync: Bool, name: String) {
        self.seq = seq; self.tagID = tagID; self.kind = kind; self.sourceTime = sourceTime
        self.inSync = inSync; self.name = name
    }

    init?(payload: [UInt8]) {
        guard payload.count >= 28, let kind = TagKind(rawValue: payload[16]), payload[25] <= 1,
              let (name, end) = payload.readString(at: 26), end == payload.count else { return nil }
        seq = payload.readBE(UInt64.self, at: 0)
        tagID = payload.readBE(UInt64.self, at: 8)
        self.kind = kind
        sourceTime = payload.readBE(UInt64.self, at: 17)
        inSync = payload[25] == 1
        self.name = name
    }
}

struct CommitRecord: Equatable {
    var durableSeq: UInt64
    var state: PairState
    var resyncOffset: UInt64
    var hasBaseline: Bool
    /// Why the pair needs a resync; empty otherwise.
    var reason: String

    func encode() -> [UInt8] {
        var p: [UInt8] = []
        p.appendBE(durableSeq); p.append(state.code); p.appendBE(resyncOffset); p.append(hasBaseline ? 1 : 0)
        p.appendString(reason)
        return p
    }

    init(durableSeq: UInt64, state: PairState, resyncOffset: UInt64, hasBaseline: Bool, reason: String) {
        self.durableSeq = durableSeq; self.state = state; self.resyncOffset = resyncOffset
        self.hasBaseline = hasBaseline; self.reason = reason
    }

    init?(payload: [UInt8]) {
        guard payload.count >= 20, let state = PairState(code: payload[8]), payload[17] <= 1,
              let (reason, end) = payload.readString(at: 18), end == payload.count else { return nil }
        durableSeq = payload.readBE(UInt64.self, at: 0)
        self.state = state
        resyncOffset = payload.readBE(UInt64.self, at: 9)
        hasBaseline = payload[17] == 1
        self.reason = reason
    }
}

struct AbortRecord {
    /// First record of the aborted range; the range ends at the ABORT record itself.
    var start: JournalPosition
    /// durableSeq of the last COMMIT before the range (0 when there is none).
    var durableSeq: UInt64

    func encode() -> [UInt8] {
        var p: [UInt8] = []
        p.appendBE(start.segment); p.appendBE(start.offset); p.appendBE(durableSeq)
        return p
    }

    init(start: JournalPosition, durableSeq: UInt64) {
        self.start = start; self.durableSeq = durableSeq
    }

    init?(payload: [UInt8]) {
        guard payload.count == 20 else { return nil }
        start = JournalPosition(segment: payload.readBE(UInt32.self, at: 0), offset: payload.readBE(UInt64.self, at: 4))
        durableSeq = payload.readBE(UInt64.self, at: 12)
    }
}

extension Array where Element == UInt8 {
    mutating func appendBE<T: FixedWidthInteger>(_ value: T) {
        Swift.withUnsafeBytes(of: value.bigEndian) { append(contentsOf: $0) }
    }

    mutating func appendString(_ string: String) {
        let utf8 = Array(string.utf8.prefix(Int(UInt16.max)))
        appendBE(UInt16(utf8.count))
        append(contentsOf: utf8)
    }

    func readBE<T: FixedWidthInteger>(_: T.Type, at offset: Int) -> T {
        var value: T = 0
        for i in 0..<MemoryLayout<T>.size {
            value = value << 8 | T(self[offset + i])
        }
        return value
    }

    /// A u16 length then UTF-8; returns the string and the offset after it.
    func readString(at offset: Int) -> (String, Int)? {
        guard offset + 2 <= count else { return nil }
        let length = Int(readBE(UInt16.self, at: offset))
        guard offset + 2 + length <= count,
              let string = String(validating: self[(offset + 2)..<(offset + 2 + length)], as: UTF8.self)
        else { return nil }
        return (string, offset + 2 + length)
    }
}
