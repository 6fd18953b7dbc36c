import MTAgentCore
import Crypto
import Foundation
import Testing
import Logging
@testable import MTAgentJournal

/// A temporary directory holding the targets, the journal root and the catalog of one test.
final class Fixture {
    let directory: String
    let catalog: Catalog
    var journalRoot: String { directory + "/journal" }

    init() throws {
        var template = Array((FileManager.default.temporaryDirectory.path + "/mtj-XXXXXX").utf8CString)
        guard let made = mkdtemp(&template) else { throw JournalError.io(operation: "mkdtemp", path: "", errno: errno) }
        directory = String(cString: made)
        catalog = try Catalog(path: directory + "/mt-agent/catalog.sqlite")
    }

    deinit { try? FileManager.default.removeItem(atPath: directory) }

    /// A regular file of `size` random bytes standing in for a target disk.
    func makeTarget(_ name: String, size: Int, rng: inout SplitMix) throws -> String {
        let path = directory + "/" + name
        try Data(rng.bytes(size)).write(to: URL(fileURLWithPath: path))
        return path
    }

    func open(_ pair: PairInfo, segmentLimit: UInt64 = 256 << 20) throws -> PairApplier {
        try PairApplier.open(pair: pair, targetPath: pair.target, admitted: nil, journalRoot: journalRoot, catalog: catalog,
                             logger: quietLogger, segmentLimit: segmentLimit)
    }

    func journal(_ pairID: String) -> String { journalRoot + "/" + pairID }

    /// A target of `size` random bytes, registered as pair `id` of group "g", and its applier.
    func openNewPair(_ id: String, size: Int, rng: inout SplitMix) throws -> (target: String, pair: PairInfo, applier: PairApplier) {
        let target = try makeTarget(id, size: size, rng: &rng)
        let pair = try catalog.registerPair(id: id, group: "g", target: target, sourceSize: UInt64(size))
        return (target, pair, try open(pair))
    }
}

let quietLogger = Logger(label: "mt-agent.journal.tests", factory: { _ in SwiftLogNoOpLogHandler() })

func readFile(_ path: String) throws -> [UInt8] {
    [UInt8](try Data(contentsOf: URL(fileURLWithPath: path)))
}

func writeFile(_ path: String, _ bytes: [UInt8]) throws {
    try Data(bytes).write(to: URL(fileURLWithPath: path))
}

func copyFile(_ from: String, _ to: String) throws {
    try writeFile(to, try readFile(from))
}

/// Every record of a pair's journal, in order (verifying checksums as open() does).
func records(_ journal: String) throws -> [RawRecord] {
    var all: [RawRecord] = []
    let segments = try JournalFormat.segments(in: journal)
    for segment in segments {
        _ = try SegmentScanner.scan(directory: journal, segment: segment, isLast: segment == segments.last) {
            all.append($0)
        }
    }
    return all
}

/// Deterministic, so a failing random test can be replayed.
struct SplitMix: RandomNumberGenerator {
    var state: UInt64
    init(seed: UInt64) { state = seed }
    mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }
    mutating func bytes(_ count: Int) -> [UInt8] {
        (0..<count).map { _ in UInt8.random(in: 0...255, using: &self) }
    }
}

/// Drives a pair the way the server does, keeping the source content in memory.
struct Driver {
    let applier: PairApplier
    var source: [UInt8]
    var seq: UInt64

    init(applier: PairApplier, source: [UInt8], seq: UInt64 = 0) {
        self.applier = applier; self.source = source; self.seq = seq
    }

    /// resyncBegin, one mark, resyncDone, committed: the target already equals the source here.
    mutating func resync() throws {
        seq += 1; _ = applier.accept(.resyncBegin(seq: seq))
        seq += 1; _ = applier.accept(.resyncMark(seq: seq, through: UInt64(source.count / 2)))
        seq += 1; _ = applier.accept(.resyncDone(seq: seq))
        _ = try applier.commit()
    }

    @discardableResult
    mutating func write(_ offset: Int, _ data: [UInt8]) -> Acceptance {
        seq += 1
        source.replaceSubrange(offset..<(offset + data.count), with: data)
        return applier.accept(.write(seq: seq, offset: UInt64(offset), data: data))
    }

    @discardableResult
    mutating func tag(_ id: UInt64, kind: TagKind = .crash) -> Acceptance {
        seq += 1
        return applier.accept(.tag(seq: seq, tagID: id, kind: kind, name: "tag-\(id)", sourceTime: id * 1_000))
    }
}

/// Restores a copy of `target` to `position` and returns its bytes.
func restoredCopy(fixture: Fixture, pairID: String, target: String, position: JournalPosition) throws -> [UInt8] {
    let copy = fixture.directory + "/restore-\(pairID)"
    try copyFile(target, copy)
    try UndoRestore.restore(pairJournal: fixture.journal(pairID), to: position, target: copy)
    return try readFile(copy)
}

/// SHA-256 in hex: byte-for-byte comparisons that print 64 characters instead of megabytes on failure.
func digest(_ bytes: [UInt8]?) -> String {
    guard let bytes else { return "nil" }
    return SHA256.hash(data: bytes).map { String(format: "%02x", $0) }.joined()
}

extension Tag {
    /// Temporary files and a real SQLite catalog; no devices, no root.
    @Tag static var medium: Self
}
