import Foundation
import Glibc
import MTAgentCore
import MTAgentJournal
import MTAgentReplication
import Testing

/// `mt-agent send` killed -9 and run again with the same `--pair` (docs/sender.md "Resuming"):
/// an interrupted resync goes on from where the MT recorded it.
@Suite(.serialized, .tags(.large), .enabled(if: geteuid() == 0, "needs root for loop devices and mounts"))
struct SenderResumeEndToEndTests {
    static let mib = 1 << 20

    /// The first `count` bytes of a file or block device.
    static func bytes(_ path: String, count: Int) throws -> [UInt8] {
        let h = try FileHandle(forReadingFrom: URL(fileURLWithPath: path))
        defer { try? h.close() }
        return Array(try h.read(upToCount: count) ?? Data())
    }

    /// A resync killed, continued, and killed again: the continuation must never move the MT's
    /// recorded progress back (RESYNC_BEGIN would reset it to 0), so each run gets further.
    @Test func aResyncKilledTwiceKeepsTheMastersProgress() throws {
        let lab = try LabMaster()
        defer { lab.remove() }
        let work = lab.directory.path
        let size = 256 * Self.mib
        var rng = SeededBytes(state: 23)
        let source = work + "/source.img"
        try Data(rng.bytes(size)).write(to: URL(fileURLWithPath: source))
        let target = try lab.target(bytes: UInt64(size))
        try lab.start()
        func progress() -> UInt64? { (try? Catalog(path: lab.catalogPath).pair(id: "p1"))??.resyncOffset }

        let first = try Background(lab.sendArguments("resync", source: source, pair: "p1", target: target), stderrPath: work + "/s1.err")
        defer { first.kill9() }
        var recorded: UInt64 = 0
        for _ in 0..<1500 where recorded == 0 {
            usleep(20_000)
            recorded = progress() ?? 0
        }
        first.kill9()
        #expect(recorded > 0 && recorded < UInt64(size), "the MT recorded resync progress \(recorded)")

        // The second run: kill it at the first change of the MT's progress.
        let second = try Background(lab.sendArguments("resync", source: source, pair: "p1", target: target) + ["--log-level", "info"],
                                    stderrPath: work + "/s2.err")
        defer { second.kill9() }
        var now = recorded
        for _ in 0..<1500 where now == recorded && second.process.isRunning {
            usleep(20_000)
            now = progress() ?? recorded
        }
        second.kill9()
        #expect(now > recorded, "the continuation moved the MT's resync progress from \(recorded) back to \(now)")
        let log2 = (try? String(contentsOfFile: work + "/s2.err", encoding: .utf8)) ?? ""
        #expect(log2.contains("state=resyncing"), "the MT did not report the interrupted resync: \(log2)")

        let third = try mtAgent(lab.sendArguments("resync", source: source, pair: "p1", target: target) + ["--json", "--log-level", "info"])
        #expect(third.status == 0, "\(third.stderr)")
        #expect(third.stderr.contains("resync continues where the master target stopped"), "\(third.stderr)")
        let sent = try #require(try third.json["stats"] as? [String: Any])["bytesSent"] as? Int ?? Int.max
        #expect(sent <= size - Int(min(now, UInt64(size))), "the third run sent \(sent) bytes; the MT had \(now) of \(size)")
        #expect(try sha256(target) == sha256(source))
        #expect(lab.stop() == 0)
    }
}
