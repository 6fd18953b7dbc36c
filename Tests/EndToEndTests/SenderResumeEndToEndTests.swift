import Foundation
import Glibc
import MTAgentCore
import MTAgentJournal
import MTAgentReplication
import Testing

/// `mt-agent send` killed -9 and run again with the same `--pair` (docs/sender.md "Resuming"):
/// nothing it put on the source is lost, and an interrupted resync goes on from where the MT
/// recorded it.
@Suite(.serialized, .tags(.large), .enabled(if: geteuid() == 0, "needs root for loop devices and mounts"))
struct SenderResumeEndToEndTests {
    static let mib = 1 << 20

    /// The first `count` bytes of a file or block device.
    static func bytes(_ path: String, count: Int) throws -> [UInt8] {
        let h = try FileHandle(forReadingFrom: URL(fileURLWithPath: path))
        defer { try? h.close() }
        return Array(try h.read(upToCount: count) ?? Data())
    }

    /// A replay killed -9 while it had writes on its source that the MT never acknowledged: the
    /// next run with the same pair must bring them over before anything else, so the target and
    /// every later recovery point match the source.
    @Test func aReplayKilledWithUnacknowledgedWritesIsResyncedByTheNextRun() throws {
        let lab = try LabMaster()
        defer { lab.remove() }
        let work = lab.directory.path
        let size = 32 * Self.mib
        var rng = SeededBytes(state: 17)
        let source = work + "/source.img"
        try Data(rng.bytes(size)).write(to: URL(fileURLWithPath: source))
        let target = try lab.target(bytes: UInt64(size))
        try lab.start()
        let first = try mtAgent(lab.sendArguments("resync", source: source, pair: "p1", target: target))
        #expect(first.status == 0, "\(first.stderr)")

        // Trace A: 4000 writes of 64 KiB all over the source, far more than a sender keeps unacked.
        var a: [String] = []
        for i in 0..<4000 {
            a.append("write \(rng.next() % UInt64(size - 65536)) 65536 \(rng.next() >> 1)")
            if i % 200 == 199 { a.append("tag crash a\(i)") }
        }
        try a.joined(separator: "\n").write(toFile: work + "/a.trace", atomically: true, encoding: .utf8)
        let killed = try Background(lab.sendArguments("replay", source: source, pair: "p1", target: target)
                                    + [work + "/a.trace", "--log-level", "info"], stderrPath: work + "/a.err")
        defer { killed.kill9() }
        var open = false
        for _ in 0..<600 where !open {
            usleep(50_000)
            open = ((try? String(contentsOfFile: work + "/a.err", encoding: .utf8)) ?? "").contains("pair open")
        }
        #expect(open, "the replay did not open its pair")
        usleep(500_000)
        // The MT stops answering; the sender goes on writing its source and sending until it may
        // keep no more unacknowledged; then it dies without a word.
        let server = try #require(lab.serverPID)
        kill(server, SIGSTOP)
        usleep(2_500_000)
        let wasRunning = killed.process.isRunning
        killed.kill9()
        kill(server, SIGCONT)
        #expect(wasRunning, "the replay finished while the MT was stopped; make trace A longer")
        let afterKill = try Self.bytes(source, count: size)

        // Trace B: a few writes and two tags. The source at each tag is known from afterKill.
        var b: [String] = []
        var model = afterKill
        var expected: [String: String] = [:]
        for t in 0..<2 {
            for _ in 0..<20 {
                let offset = Int(rng.next() % UInt64(size - 8192)), length = 1000 + Int(rng.next() % 7000), seed = rng.next() >> 1
                b.append("write \(offset) \(length) \(seed)")
                model.replaceSubrange(offset..<(offset + length), with: Trace.data(seed: seed, count: length))
            }
            b.append("tag crash b\(t)")
            expected["b\(t)"] = sha256(model)
        }
        try b.joined(separator: "\n").write(toFile: work + "/b.trace", atomically: true, encoding: .utf8)
        let again = try mtAgent(lab.sendArguments("replay", source: source, pair: "p1", target: target)
                                + [work + "/b.trace", "--json", "--log-level", "info"])
        #expect(again.status == 0, "\(again.stderr)")
        #expect(again.stderr.contains("did not end with everything acknowledged: resyncing it first") && again.stderr.contains("pair.id=p1"),
                "\(again.stderr)")
        #expect(try sha256(source) == sha256(model))
        let targetBytes = try Self.bytes(target, count: size)
        let differing = zip(targetBytes, model).reduce(0) { $0 + ($1.0 == $1.1 ? 0 : 1) }
        #expect(targetBytes.count == size && differing == 0, "the target differs from the source in \(differing) bytes: writes the killed run never got acked were lost")
        #expect(lab.stop() == 0)

        // Both tags of the second run are points, and each restores the source of its moment.
        let points = try Catalog(path: lab.catalogPath).recoveryPoints(group: "g1").filter { $0.name.hasPrefix("b") }
        #expect(points.map(\.name).sorted() == ["b0", "b1"])
        for point in points {
            let copy = work + "/restore.img"
            try? FileManager.default.removeItem(atPath: copy)
            try LoopVolume.run("cp", "--sparse=always", target, copy)
            try UndoRestore.restore(pairJournal: lab.journalRoot + "/p1", to: try #require(point.positions["p1"]), target: copy)
            #expect(try sha256(copy) == expected[point.name], "point \(point.name) does not restore the source of its tag")
        }
    }

    /// A resync killed, continued, and killed again, then the MT killed: the continuation must
    /// never move the MT's recorded progress back (RESYNC_BEGIN would reset it to 0), so each run
    /// gets further.
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

        // The MT restarts too: it reopens the pair as resyncing from its journal and accepts the
        // continuation's frames.
        lab.kill9()
        try lab.start()
        #expect((progress() ?? 0) >= now, "the MT's recorded progress survives its restart")

        let third = try mtAgent(lab.sendArguments("resync", source: source, pair: "p1", target: target) + ["--json", "--log-level", "info"])
        #expect(third.status == 0, "\(third.stderr)")
        #expect(third.stderr.contains("resync continues where the master target stopped"), "\(third.stderr)")
        let sent = try #require(try third.json["stats"] as? [String: Any])["bytesSent"] as? Int ?? Int.max
        #expect(sent <= size - Int(min(now, UInt64(size))), "the third run sent \(sent) bytes; the MT had \(now) of \(size)")
        #expect(try sha256(target) == sha256(source))
        #expect(lab.stop() == 0)
    }
}
