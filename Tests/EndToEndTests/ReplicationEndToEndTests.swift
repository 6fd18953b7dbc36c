import Foundation
import Glibc
import MTAgentCore
import MTAgentJournal
import MTAgentReplication
import Testing

/// `mt-agent serve` and `mt-agent send` as built, over real TLS on loopback, onto loop-device
/// targets, with the server killed -9 in the middle of work.
@Suite(.serialized, .tags(.large), .enabled(if: geteuid() == 0, "needs root for loop devices and mounts"))
struct ReplicationEndToEndTests {
    static let mib = 1 << 20

    @Test func resyncCopiesAFileAndALoopDeviceSourceThenOnlyTheDifferences() throws {
        let lab = try LabMaster()
        defer { lab.remove() }
        let work = lab.directory.path
        var rng = SeededBytes(state: 42)
        let size = 256 * Self.mib
        let sourceFile = work + "/source-a.img"
        try Data(rng.bytes(size)).write(to: URL(fileURLWithPath: sourceFile))
        let sourceBImage = work + "/source-b.img"
        try Data(rng.bytes(size)).write(to: URL(fileURLWithPath: sourceBImage))
        let sourceDevice = try LoopVolume.run("losetup", "--find", "--show", sourceBImage).trimmingCharacters(in: .whitespacesAndNewlines)
        defer { _ = try? LoopVolume.run("losetup", "-d", sourceDevice) }
        let targetA = try lab.target(bytes: UInt64(size))
        let targetB = try lab.target(bytes: UInt64(size) + 8 * UInt64(Self.mib))  // larger than its source: allowed
        try lab.start()

        let a = try mtAgent(lab.sendArguments("resync", source: sourceFile, pair: "file-pair", target: targetA) + ["--json"])
        #expect(a.status == 0, "\(a.stderr)")
        #expect(try sha256(targetA) == sha256(sourceFile))
        let stats = try #require(try a.json["stats"] as? [String: Any])
        #expect(stats["bytesSent"] as? Int == size)

        let b = try mtAgent(lab.sendArguments("resync", source: sourceDevice, pair: "device-pair", target: targetB))
        #expect(b.status == 0, "\(b.stderr)")
        #expect(b.stdout.contains("all acknowledged"))
        let head = try FileHandle(forReadingFrom: URL(fileURLWithPath: targetB))
        let copied = head.readData(ofLength: size)
        try head.close()
        #expect(sha256(Array(copied)) == (try sha256(sourceDevice)))

        // Change 100 scattered 4 KiB blocks: the next resync moves about that much, not the disk.
        let f = try FileHandle(forUpdating: URL(fileURLWithPath: sourceFile))
        for i in 0..<100 {
            try f.seek(toOffset: UInt64(i) * UInt64(size / 100) + 12345)
            f.write(Data(rng.bytes(4096)))
        }
        try f.close()
        let again = try mtAgent(lab.sendArguments("resync", source: sourceFile, pair: "file-pair", target: targetA) + ["--json"])
        #expect(again.status == 0, "\(again.stderr)")
        let sent = try #require(try again.json["stats"] as? [String: Any])["bytesSent"] as? Int ?? Int.max
        #expect(sent <= 200 * 4096, "a 100-block change sent \(sent) bytes")
        #expect(sent >= 100 * 4096)
        #expect(try sha256(targetA) == sha256(sourceFile))

        // The catalog knows both pairs, in sync, each on its own target.
        let list = try mtAgent(["targets", "list", "--config", lab.config])
        #expect(list.stdout.contains("file-pair") && list.stdout.contains("device-pair"))
        #expect(list.stdout.components(separatedBy: "in-sync").count == 3)
        #expect(lab.stop() == 0)
    }

    /// The central promise: kill -9 the server at random moments during continuous writes with
    /// tags; the sender resumes; at the end the target equals the source, and every recovery
    /// point recorded restores the source exactly as it was at its tag.
    @Test func killNineDuringContinuousWritesLosesNoAckedWriteAndEveryPointRestores() throws {
        let lab = try LabMaster()
        defer { lab.remove() }
        let work = lab.directory.path
        let size = 16 * Self.mib  // small, so writes overlap a lot and each point is quick to restore
        var rng = SeededBytes(state: 7)
        let initial = rng.bytes(size)
        let source = work + "/source.img"
        try Data(initial).write(to: URL(fileURLWithPath: source))
        let target = try lab.target(bytes: UInt64(size))
        try lab.start()
        let first = try mtAgent(lab.sendArguments("resync", source: source, pair: "p1", target: target))
        #expect(first.status == 0, "\(first.stderr)")

        // A trace of unaligned and aligned writes of many sizes, a tag every 60 writes.
        var lines: [String] = []
        var expected: [String: String] = [:]  // tag name → SHA-256 of the source at that tag
        var model = initial
        for i in 0..<3000 {
            let length = [512, 1000, 4096, 8192, 65536, 262_144][Int(rng.next() % 6)]
            let offset = Int(rng.next() % UInt64(size - length))
            let seed = rng.next() >> 1
            lines.append("write \(offset) \(length) \(seed)")
            model.replaceSubrange(offset..<(offset + length), with: Trace.data(seed: seed, count: length))
            if i % 60 == 59 {
                let name = "t\(i / 60)"
                lines.append("tag \(i % 600 == 599 ? "app" : "crash") \(name)")
                expected[name] = sha256(model)
            }
        }
        let trace = work + "/writes.trace"
        try lines.joined(separator: "\n").write(toFile: trace, atomically: true, encoding: .utf8)

        let sender = try Background(lab.sendArguments("replay", source: source, pair: "p1", target: target) + [trace, "--json"],
                                    stderrPath: work + "/sender.err")
        var kills = 0
        var rng2 = SeededBytes(state: 99)
        while sender.process.isRunning && kills < 5 {
            usleep(useconds_t(300_000 + rng2.next() % 1_200_000))
            guard sender.process.isRunning else { break }
            lab.kill9()
            kills += 1
            try lab.start()
        }
        let result = sender.wait()
        #expect(result.status == 0, "\(result.stderr)")
        #expect(kills >= 2, "the sender finished before the server could be killed twice; make the trace longer")
        #expect(try sha256(target) == sha256(source))
        #expect(sha256(model) == (try sha256(source)))
        lab.stop()

        // Every recovery point restores the source as it was at its tag.
        let catalog = try Catalog(path: lab.catalogPath)
        let points = try catalog.recoveryPoints(group: "g1")
        #expect(points.count >= expected.count / 2, "only \(points.count) of \(expected.count) tags became recovery points")
        var checked = 0
        for point in points {
            let want = try #require(expected[point.name], "unknown tag \(point.name)")
            let copy = work + "/restore.img"
            try? FileManager.default.removeItem(atPath: copy)
            try LoopVolume.run("cp", "--sparse=always", target, copy)
            let position = try #require(point.positions["p1"])
            try UndoRestore.restore(pairJournal: lab.journalRoot + "/p1", to: position, target: copy)
            #expect(try sha256(copy) == want, "point \(point.name) (tag \(point.tagID)) does not restore the source of that tag")
            checked += 1
        }
        #expect(checked == points.count)
        #expect(points.contains { $0.kind == .app })
    }

    @Test func refusalsNameTheReason() throws {
        let lab = try LabMaster()
        defer { lab.remove() }
        let work = lab.directory.path
        let source = work + "/source.img"
        var rng = SeededBytes(state: 1)
        try Data(rng.bytes(8 * Self.mib)).write(to: URL(fileURLWithPath: source))
        let target = try lab.target(bytes: UInt64(8 * Self.mib))
        let small = try lab.target(bytes: UInt64(4 * Self.mib))
        let unassigned = try lab.target(bytes: UInt64(8 * Self.mib), group: nil)
        try lab.start()

        let wrongPass = work + "/wrong.pass"
        try "not the passphrase\n".write(toFile: wrongPass, atomically: true, encoding: .utf8)
        chmod(wrongPass, 0o600)
        let r1 = try mtAgent(lab.sendArguments("resync", source: source, pair: "p1", target: target, passphraseFile: wrongPass))
        #expect(r1.status == 2)
        #expect(r1.stderr.contains("passphrase"), "\(r1.stderr)")
        #expect(lab.log.contains("passphrase proof failed") && lab.log.contains("peer=127.0.0.1:"))

        let otherFingerprint = String(repeating: "ab:", count: 31) + "ab"
        let r2 = try mtAgent(lab.sendArguments("resync", source: source, pair: "p1", target: target, fingerprint: otherFingerprint))
        #expect(r2.status == 2)
        #expect(r2.stderr.contains("fingerprint"), "\(r2.stderr)")

        let r3 = try mtAgent(lab.sendArguments("resync", source: source, pair: "p2", target: unassigned))
        #expect(r3.status == 2)
        #expect(r3.stderr.contains("target.assigned") && r3.stderr.contains("mt-agent targets assign"), "\(r3.stderr)")

        let r4 = try mtAgent(lab.sendArguments("resync", source: source, pair: "p3", target: small))
        #expect(r4.status == 2)
        #expect(r4.stderr.contains("target.size") && r4.stderr.contains("smaller than the source"), "\(r4.stderr)")

        let r5 = try mtAgent(lab.sendArguments("resync", source: source, pair: "p4", group: "other", target: target))
        #expect(r5.status == 2)
        #expect(r5.stderr.contains("assigned to group g1, not other"), "\(r5.stderr)")

        // A mounted disk: assigning it is refused; forced, the server still refuses to write it.
        let mounted = try LoopVolume(sizeMiB: 64)
        defer { mounted.remove() }
        let a = try mtAgent(["targets", "assign", mounted.device, "--group", "g1", "--config", lab.config])
        #expect(a.status == 2)
        #expect(a.stderr.contains("is mounted on"), "\(a.stderr)")
        #expect(try mtAgent(["targets", "assign", mounted.device, "--group", "g1", "--force", "--config", lab.config]).status == 0)
        let r6 = try mtAgent(lab.sendArguments("resync", source: source, pair: "p5", target: mounted.device))
        #expect(r6.status == 2)
        #expect(r6.stderr.contains("target.mounted"), "\(r6.stderr)")

        // The retention volume's own disk can never be a target.
        let check = try mtAgent(["check", "target", lab.retention.device, "--config", lab.config, "--json"])
        #expect(check.status == 1)
        #expect(check.stdout.contains("holds the retention volume"))

        // Nothing was written anywhere a refusal was given.
        #expect(try sha256(small) == sha256(Array(repeating: 0, count: 4 * Self.mib)))
        #expect(try sha256(unassigned) == sha256(Array(repeating: 0, count: 8 * Self.mib)))
        #expect(lab.stop() == 0)
    }

    @Test func underSystemdServeNotifiesReadyWatchdogAndStopping() throws {
        let lab = try LabMaster()
        defer { lab.remove() }
        let socketPath = lab.directory.path + "/notify.sock"
        let fd = socket(AF_UNIX, Int32(SOCK_DGRAM.rawValue), 0)
        #expect(fd >= 0)
        defer { close(fd) }
        var addr = sockaddr_un()
        addr.sun_family = sa_family_t(AF_UNIX)
        withUnsafeMutableBytes(of: &addr.sun_path) { raw in
            for (i, b) in socketPath.utf8.enumerated() { raw[i] = b }
        }
        let bound = withUnsafePointer(to: &addr) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, socklen_t(MemoryLayout<sockaddr_un>.size)) }
        }
        #expect(bound == 0)
        var timeout = timeval(tv_sec: 20, tv_usec: 0)
        setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &timeout, socklen_t(MemoryLayout<timeval>.size))
        func receive() -> String? {
            var buffer = [UInt8](repeating: 0, count: 4096)
            let n = recv(fd, &buffer, buffer.count, 0)
            return n > 0 ? String(decoding: buffer[0..<n], as: UTF8.self) : nil
        }
        try lab.start(environment: ["NOTIFY_SOCKET": socketPath, "WATCHDOG_USEC": "1000000"])
        var seen: [String] = []
        while !seen.contains(where: { $0.contains("READY=1") }) || !seen.contains(where: { $0.contains("WATCHDOG=1") }) {
            guard let m = receive() else { break }
            seen.append(m)
        }
        #expect(seen.contains { $0.contains("READY=1") && $0.contains("STATUS=listening") })
        #expect(seen.contains { $0.contains("WATCHDOG=1") })
        let pid = try #require(lab.serverPID)
        kill(pid, SIGTERM)
        var stopping = false
        while let m = receive() {
            if m.contains("STOPPING=1") { stopping = true; break }
        }
        #expect(stopping)
        #expect(lab.stop() == 0)
        #expect(lab.log.contains("stopped: everything acknowledged is durable"))
    }

    @Test func sigtermWhileReplicatingDrainsAndTheSenderResumes() throws {
        let lab = try LabMaster()
        defer { lab.remove() }
        let work = lab.directory.path
        let size = 32 * Self.mib
        var rng = SeededBytes(state: 3)
        let source = work + "/source.img"
        try Data(rng.bytes(size)).write(to: URL(fileURLWithPath: source))
        let target = try lab.target(bytes: UInt64(size))
        try lab.start()
        var lines: [String] = []
        for i in 0..<1500 {
            lines.append("write \(Int(rng.next() % UInt64(size - 65536))) 65536 \(rng.next() >> 1)")
            if i % 50 == 49 { lines.append("tag crash c\(i)") }
        }
        let trace = work + "/t.trace"
        try lines.joined(separator: "\n").write(toFile: trace, atomically: true, encoding: .utf8)
        let sender = try Background(lab.sendArguments("replay", source: source, pair: "p1", target: target) + [trace], stderrPath: work + "/sender.err")
        usleep(1_500_000)
        #expect(lab.stop() == 0, "SIGTERM must end serve with status 0")
        try lab.start()
        let result = sender.wait()
        #expect(result.status == 0, "\(result.stderr)")
        #expect(try sha256(target) == sha256(source))
        #expect(lab.log.contains("stopping: no new connections"))
    }
}

/// The parts of replication that take more than one run of a command: an interrupted resync, the
/// follow mode with app-consistent tags under fsfreeze, and the RPO warning.
@Suite(.serialized, .tags(.large), .enabled(if: geteuid() == 0, "needs root for loop devices and mounts"))
struct ReplicationLifecycleEndToEndTests {
    static let mib = 1 << 20

    @Test func aKilledResyncContinuesWhereTheMasterTargetSaysItStopped() throws {
        let lab = try LabMaster()
        defer { lab.remove() }
        let work = lab.directory.path
        let size = 256 * Self.mib
        var rng = SeededBytes(state: 11)
        let source = work + "/source.img"
        try Data(rng.bytes(size)).write(to: URL(fileURLWithPath: source))
        let target = try lab.target(bytes: UInt64(size))
        try lab.start()
        // Kill the sender once the MT has recorded part of the resync.
        let first = try Background(lab.sendArguments("resync", source: source, pair: "p1", target: target), stderrPath: work + "/s1.err")
        var recorded: UInt64 = 0
        for _ in 0..<1500 where recorded == 0 {
            usleep(20_000)
            recorded = (try? Catalog(path: lab.catalogPath).pair(id: "p1"))??.resyncOffset ?? 0
        }
        first.kill9()
        #expect(recorded > 0 && recorded < UInt64(size), "the MT recorded resync progress \(recorded)")
        let second = try mtAgent(lab.sendArguments("resync", source: source, pair: "p1", target: target) + ["--json", "--log-level", "info"])
        #expect(second.status == 0, "\(second.stderr)")
        let sent = try #require(try second.json["stats"] as? [String: Any])["bytesSent"] as? Int ?? 0
        #expect(second.stderr.contains("state=resyncing"), "the MT did not report the interrupted resync")
        #expect(sent < size, "the second run sent \(sent) bytes of \(size): it started over")
        #expect(try sha256(target) == sha256(source))
        #expect(lab.stop() == 0)
    }

    @Test func followSendsChangesAndTagsAppConsistentPointsUnderFsfreeze() throws {
        let lab = try LabMaster()
        defer { lab.remove() }
        let work = lab.directory.path
        let volume = try LoopVolume(sizeMiB: 64)  // the source: a mounted ext4 the test writes into
        defer { volume.remove() }
        let target = try lab.target(bytes: UInt64(64 * Self.mib))
        try lab.start()
        try Data(repeating: 0x5A, count: 3 * Self.mib).write(to: URL(fileURLWithPath: volume.mountPoint + "/before.bin"))
        let follower = try Background(lab.sendArguments("follow", source: volume.device, pair: "p1", target: target)
                                      + ["--interval", "1", "--cycles", "4", "--app-tag", "quiesced", "--app-every", "2",
                                         "--freeze", volume.mountPoint, "--json"], stderrPath: work + "/follow.err")
        usleep(2_500_000)
        try Data(repeating: 0xA5, count: 2 * Self.mib).write(to: URL(fileURLWithPath: volume.mountPoint + "/during.bin"))
        let result = follower.wait()
        #expect(result.status == 0, "\(result.stderr)")
        let summary = try #require(try JSONSerialization.jsonObject(with: Data(result.stdout.utf8)) as? [String: Any])
        let stats = try #require(summary["stats"] as? [String: Any])
        #expect(stats["tags"] as? Int == 4)
        lab.stop()
        let points = try Catalog(path: lab.catalogPath).recoveryPoints(group: "g1")
        #expect(points.count == 4)
        #expect(points.filter { $0.kind == .app }.map(\.name) == ["quiesced", "quiesced"])
        // The newest point is the source as follow last read it, frozen: restoring it changes nothing.
        let copy = work + "/copy.img"
        try LoopVolume.run("cp", target, copy)
        try UndoRestore.restore(pairJournal: lab.journalRoot + "/p1", to: try #require(points.first?.positions["p1"]), target: copy)
        #expect(try sha256(copy) == sha256(target))
        // The filesystem was thawed at the end (a write would hang otherwise).
        try Data([1]).write(to: URL(fileURLWithPath: volume.mountPoint + "/after.bin"))
    }

    @Test func aGroupWithoutAFreshRecoveryPointIsAnRPOWarning() throws {
        let metricsPort = try LoopbackListener().freePort()
        let lab = try LabMaster(metricsAddress: "127.0.0.1:\(metricsPort)")
        defer { lab.remove() }
        var config = try String(contentsOfFile: lab.config, encoding: .utf8)
        config = config.replacingOccurrences(of: "rpo_threshold = 15m", with: "rpo_threshold = 2s")
        try config.write(toFile: lab.config, atomically: true, encoding: .utf8)
        let work = lab.directory.path
        let source = work + "/source.img"
        var rng = SeededBytes(state: 5)
        try Data(rng.bytes(4 * Self.mib)).write(to: URL(fileURLWithPath: source))
        let target = try lab.target(bytes: UInt64(4 * Self.mib))
        try lab.start()
        // A sender that stays connected with its pair open while no new point arrives.
        let sender = try Background(lab.sendArguments("follow", source: source, pair: "p1", target: target)
                                    + ["--interval", "30", "--cycles", "1"], stderrPath: work + "/s.err")
        defer { sender.kill9() }
        var warned = false
        for _ in 0..<60 where !warned {
            usleep(500_000)
            warned = lab.log.contains("RPO threshold crossed") && lab.log.contains("group.id=g1")
        }
        #expect(warned, "no RPO warning within 30 s at a 2 s threshold")
        #expect(lab.log.contains("rpo.threshold_seconds=2"))
        // The warning is counted once: the group stays over the threshold, it does not cross it again.
        let scrape = Exposition(try HTTPExchange(port: metricsPort, method: "GET", path: "/metrics").body)
        #expect(scrape[#"mt_agent_rpo_violations_total{group="g1"}"#] == 1, "\(scrape.samples)")
    }
}

extension ReplicationLifecycleEndToEndTests {
    @Test func replayInsertsTimedTagsWithTagInterval() throws {
        let lab = try LabMaster()
        defer { lab.remove() }
        let work = lab.directory.path
        let source = work + "/source.img"
        var rng = SeededBytes(state: 21)
        try Data(rng.bytes(4 * Self.mib)).write(to: URL(fileURLWithPath: source))
        let target = try lab.target(bytes: UInt64(4 * Self.mib))
        try lab.start()
        #expect(try mtAgent(lab.sendArguments("resync", source: source, pair: "p1", target: target)).status == 0)
        // 12 writes 100 ms apart, no tag in the trace: the 250 ms interval must add several.
        let lines = (0..<12).map { "write \($0 * 4096) 4096 \($0)\nsleep 100" }
        try lines.joined(separator: "\n").write(toFile: work + "/t.trace", atomically: true, encoding: .utf8)
        let r = try mtAgent(lab.sendArguments("replay", source: source, pair: "p1", target: target) + [work + "/t.trace", "--tag-interval", "0.25", "--json"])
        #expect(r.status == 0, "\(r.stderr)")
        let tags = try #require(try r.json["stats"] as? [String: Any])["tags"] as? Int ?? 0
        #expect((3...6).contains(tags), "\(tags) timed tags in 1.2 s at 0.25 s")
        lab.stop()
        let names = try Catalog(path: lab.catalogPath).recoveryPoints(group: "g1").map(\.name)
        #expect(names.contains("interval-1") && names.count == tags)
        let bad = try mtAgent(lab.sendArguments("resync", source: source, pair: "p1", target: target) + ["--tag-interval", "1"])
        #expect(bad.status != 0 && bad.stderr.contains("--tag-interval is for replay"))
    }
}

extension ReplicationLifecycleEndToEndTests {
    /// A port already in use: one error line, exit 2, promptly — not a process left spinning.
    @Test func serveOnATakenPortExitsWithOneErrorLine() throws {
        let lab = try LabMaster()
        defer { lab.remove() }
        // Another program holds the port.
        let holder = try LoopbackListener()
        defer { holder.close() }  // also keeps it open until then
        let port = holder.port
        let second = try Background(["serve", "--config", lab.config, "--port", "\(port)"], stderrPath: lab.directory.path + "/second.err")
        var waited = 0
        while second.process.isRunning && waited < 200 {
            usleep(100_000)
            waited += 1
        }
        let running = second.process.isRunning
        second.kill9()
        #expect(!running, "serve on a taken port was still running after 20 s")
        let result = second.wait()
        #expect(result.status == 2)
        let errors = result.stderr.split(separator: "\n").filter { $0.hasPrefix("mt-agent: error:") }
        #expect(errors.count == 1 && errors[0].contains("in use"), "\(result.stderr)")
    }

    /// Two services on one retention volume would be two writers of one journal.
    @Test func aSecondServeOnTheSameRetentionVolumeIsRefused() throws {
        let lab = try LabMaster()
        defer { lab.remove() }
        try lab.start()
        let second = try mtAgent(["serve", "--config", lab.config, "--port", "0"])
        #expect(second.status == 2)
        #expect(second.stderr.contains("another mt-agent process holds") && second.stderr.contains("serve.lock"), "\(second.stderr)")
        #expect(lab.stop() == 0)
    }
}
