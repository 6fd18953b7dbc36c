import Crypto
import Foundation
import Glibc
import MTAgentCore
import Testing
@testable import MTAgentJournal

@Suite("journal segments: CRC-32C records written in whole blocks", .tags(.medium))
struct SegmentWriterTests {
    @Test func crc32cMatchesKnownValuesAndABitwiseReference() {
        func crc(_ head: [UInt8], _ body: [UInt8]) -> UInt32 {
            head.withUnsafeBytes { h in body.withUnsafeBytes { JournalFormat.crc32c(header: h, payload: $0) } }
        }
        // RFC 3720 (iSCSI) B.4, and the usual check value, split across the two parts.
        #expect(crc(Array("1234".utf8), Array("56789".utf8)) == 0xE306_9283)
        #expect(crc([UInt8](repeating: 0, count: 32), []) == 0x8A91_36AA)
        #expect(crc([UInt8](repeating: 0xFF, count: 16), [UInt8](repeating: 0xFF, count: 16)) == 0x62A8_AB43)
        #expect(crc(Array(0...31), []) == 0x46DD_794E)
        var rng = SplitMix(seed: 7)
        for length in [1, 7, 8, 9, 63, 4096, 100_003] {
            let bytes = rng.bytes(length)
            let split = length / 3
            #expect(crc(Array(bytes[..<split]), Array(bytes[split...])) == referenceCRC32C(bytes), "length \(length)")
        }
    }

    /// Random records, synced at random points, rolled over small segments: what the scanner reads back
    /// is what was appended, at the positions `append` returned. With O_DIRECT each sync ends on a block
    /// boundary (a PAD record fills the block) and never changes a byte synced before; through the page
    /// cache (where O_DIRECT is refused) no PAD is written.
    @Test(arguments: [true, false])
    func recordsReadBackAsAppended(direct: Bool) throws {
        let directory = try makeTemporaryDirectory(in: FileManager.default.temporaryDirectory.path)
        defer { try? FileManager.default.removeItem(atPath: directory) }
        if direct { try #require(supportsDirectIO(directory), "O_DIRECT in \(directory)") }

        var rng = SplitMix(seed: 11)
        let writer = try SegmentWriter(directory: directory, segment: 1, size: 0, limit: 200_000, directIO: direct)
        var appended: [(JournalPosition, RecordType, [UInt8])] = []
        var synced: [UInt32: [UInt8]] = [:]
        for i in 0..<60 {
            let type: RecordType = [.undo, .tag, .commit][Int.random(in: 0...2, using: &rng)]
            let payload = rng.bytes(Int.random(in: 0...(i % 7 == 0 ? 300_000 : 5000), using: &rng))
            appended.append((try writer.append(type, payload), type, payload))
            if Bool.random(using: &rng) || i == 59 {
                try writer.sync()
                let path = JournalFormat.segmentPath(directory, writer.segment)
                let bytes = try readFile(path)
                #expect(UInt64(bytes.count) == writer.size, "the file ends where the next record goes")
                if direct { #expect(bytes.count % DirectIO.alignment == 0, "sync \(i) ends on a block boundary") }
                if let before = synced[writer.segment] {
                    #expect(Array(bytes.prefix(before.count)) == before, "sync \(i) changed bytes synced before")
                }
                synced[writer.segment] = bytes
            }
        }
        let read = try records(directory)
        #expect(read.map(\.position) == appended.map(\.0))
        #expect(read.map(\.type) == appended.map(\.1))
        #expect(read.map(\.payload) == appended.map(\.2))
        let segments = try JournalFormat.segments(in: directory)
        #expect(segments.count > 3, "the 200 kB limit rolled segments")
        let pads = try segments.flatMap { try rawTypes(JournalFormat.segmentPath(directory, $0)) }.filter { $0 == .pad }.count
        if direct { #expect(pads > 0) } else { #expect(pads == 0) }
    }

    /// A segment written before CRC-32C and O_DIRECT (SHA-256 records, ending mid-block) is read as it
    /// was, and new records follow it without changing its bytes.
    @Test func appendsAfterAnOldFormatSegment() throws {
        let directory = try makeTemporaryDirectory(in: FileManager.default.temporaryDirectory.path)
        defer { try? FileManager.default.removeItem(atPath: directory) }
        var rng = SplitMix(seed: 12)
        let old: [(RecordType, [UInt8])] = [(.undo, rng.bytes(5000)), (.tag, rng.bytes(40)), (.commit, rng.bytes(30))]
        let oldBytes = old.flatMap { sha256Record($0.0, $0.1) }
        let path = JournalFormat.segmentPath(directory, 1)
        try writeFile(path, oldBytes)
        #expect(oldBytes.count % DirectIO.alignment != 0)

        let writer = try SegmentWriter(directory: directory, segment: 1, size: UInt64(oldBytes.count), limit: 256 << 20)
        let new: [(RecordType, [UInt8])] = [(.undo, rng.bytes(70_000)), (.commit, rng.bytes(25))]
        for (type, payload) in new { try writer.append(type, payload) }
        try writer.sync()

        let bytes = try readFile(path)
        #expect(Array(bytes.prefix(oldBytes.count)) == oldBytes)
        let read = try records(directory)
        #expect(read.map(\.type) == (old + new).map(\.0))
        #expect(read.map(\.payload) == (old + new).map(\.1))
        #expect(read.map { bytes[Int($0.position.offset) + 5] } == [0, 0, 0, JournalFormat.flagCRC32C, JournalFormat.flagCRC32C])
    }

    @Test func aChangedByteFailsEitherChecksum() {
        var rng = SplitMix(seed: 13)
        let payload = rng.bytes(3000)
        for (name, record) in [("SHA-256", sha256Record(.undo, payload)), ("CRC-32C", JournalFormat.encode(type: .undo, payload: payload))] {
            let h = JournalFormat.headerSize
            #expect(JournalFormat.checksumMatches(header: record[..<h], payload: record[h...]), "\(name) as written")
            for index in [4, 9, 13, 40, h, h + 1500, record.count - 1] {
                var damaged = record
                damaged[index] ^= 0x10
                #expect(!JournalFormat.checksumMatches(header: damaged[..<h], payload: damaged[h...]), "\(name) byte \(index)")
            }
        }
    }
}

/// CRC-32C one bit at a time, as the polynomial defines it.
private func referenceCRC32C(_ bytes: [UInt8]) -> UInt32 {
    var crc: UInt32 = 0xFFFF_FFFF
    for byte in bytes {
        crc ^= UInt32(byte)
        for _ in 0..<8 { crc = crc & 1 == 1 ? (crc >> 1) ^ 0x82F6_3B78 : crc >> 1 }
    }
    return ~crc
}

/// A record as the journal wrote it before the CRC-32C flag: flags 0 and a SHA-256 checksum.
private func sha256Record(_ type: RecordType, _ payload: [UInt8]) -> [UInt8] {
    var bytes = JournalFormat.magic + [type.rawValue, 0, 0, 0]
    bytes.appendBE(UInt32(payload.count))
    var hasher = SHA256()
    hasher.update(data: bytes[4..<12])
    hasher.update(data: payload)
    return bytes + Array(hasher.finalize()) + payload
}

/// The type of every record in a segment file, PAD records included (the scanner skips those).
private func rawTypes(_ path: String) throws -> [RecordType] {
    let bytes = try readFile(path)
    var types: [RecordType] = []
    var offset = 0
    while offset + JournalFormat.headerSize <= bytes.count {
        guard let type = RecordType(rawValue: bytes[offset + 4]) else { break }
        types.append(type)
        offset += JournalFormat.headerSize + Int(bytes.readBE(UInt32.self, at: offset + 8))
    }
    return types
}

private func makeTemporaryDirectory(in root: String) throws -> String {
    var template = Array((root + "/mtj-seg-XXXXXX").utf8CString)
    guard let made = mkdtemp(&template) else { throw JournalError.io(operation: "mkdtemp", path: root, errno: errno) }
    return String(cString: made)
}

private func supportsDirectIO(_ directory: String) -> Bool {
    let fd = open(directory + "/probe", O_RDWR | O_CREAT | DirectIO.openFlag, 0o600)
    defer { unlink(directory + "/probe") }
    guard fd >= 0 else { return false }
    close(fd)
    return true
}
