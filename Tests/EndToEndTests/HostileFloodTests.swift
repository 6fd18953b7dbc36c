import Foundation
import Glibc
import MTAgentReplication
import NIOCore
import NIOPosix
import NIOSSL
import Synchronization
import Testing

// The built `serve`, with its default limits, flooded by peers that never authenticate (issue
// items 2–4, docs/PROTOCOL.md §3.3) while a legitimate sender keeps following its source. Each
// flood is bounded: serve's peak RSS, its open fds, how long an unauthenticated connection lives,
// and how many wrong passphrases it checks per second. The figures are printed for the report.

/// serve's memory and file descriptors, from /proc.
struct ProcessFootprint: CustomStringConvertible {
    var peakRSSKiB: Int
    var rssKiB: Int
    var fds: Int

    init(pid: Int32) {
        let status = (try? String(contentsOfFile: "/proc/\(pid)/status", encoding: .utf8)) ?? ""
        func field(_ name: String) -> Int {
            guard let line = status.split(separator: "\n").first(where: { $0.hasPrefix(name + ":") }) else { return -1 }
            return Int(line.split(separator: " ", omittingEmptySubsequences: true).dropFirst().first ?? "") ?? -1
        }
        peakRSSKiB = field("VmHWM")
        rssKiB = field("VmRSS")
        fds = (try? FileManager.default.contentsOfDirectory(atPath: "/proc/\(pid)/fd").count) ?? -1
    }

    var description: String { "VmHWM \(peakRSSKiB / 1024) MiB, VmRSS \(rssKiB / 1024) MiB, \(fds) fds" }
}

/// One hostile TLS connection: raw bytes out, decoded frames in, and when it ended.
final class HostilePeer: Sendable {
    enum End: Sendable, Equatable { case open, closed(after: Duration, frames: [String]) }

    let channel: NIOAsyncChannel<Frame, ByteBuffer>
    let started: ContinuousClock.Instant
    private let received = Mutex<[Frame]>([])
    private let end = Mutex<End>(.open)

    private init(channel: NIOAsyncChannel<Frame, ByteBuffer>, started: ContinuousClock.Instant) {
        self.channel = channel
        self.started = started
    }

    deinit { channel.channel.close(promise: nil) }

    static let tls: NIOSSLContext = {
        var tls = TLSConfiguration.makeClientConfiguration()
        tls.certificateVerification = .none
        tls.minimumTLSVersion = .tlsv13
        return try! NIOSSLContext(configuration: tls)
    }()

    /// Connects (from `from`, one of 127.0.0.0/8) and starts collecting what the server sends.
    static func connect(port: Int, from: String? = nil, group: any EventLoopGroup) async throws -> HostilePeer {
        var bootstrap = ClientBootstrap(group: group)
        if let from { bootstrap = bootstrap.bind(to: try SocketAddress(ipAddress: from, port: 0)) }
        let started = ContinuousClock.now
        let channel = try await bootstrap.connect(host: "127.0.0.1", port: port) { ch in
            ch.eventLoop.makeCompletedFuture {
                try ch.pipeline.syncOperations.addHandler(NIOSSLClientHandler(context: tls, serverHostname: nil))
                try ch.pipeline.syncOperations.addHandler(ByteToMessageHandler(FrameDecoder()))
                return try NIOAsyncChannel<Frame, ByteBuffer>(wrappingChannelSynchronously: ch)
            }
        }
        let peer = HostilePeer(channel: channel, started: started)
        channel.channel.closeFuture.whenComplete { _ in
            let frames = peer.received.withLock { $0.map { "\($0)".prefix(60).description } }
            peer.end.withLock { $0 = .closed(after: ContinuousClock.now - started, frames: frames) }
        }
        return peer
    }

    /// Reads what the server sends until it closes; call once.
    func collect() async {
        do {
            for try await frame in channel.inbound { received.withLock { $0.append(frame) } }
        } catch {}
    }

    var state: End { end.withLock { $0 } }
    var frames: [Frame] { received.withLock { $0 } }

    func send(_ bytes: [UInt8]) async throws { try await channel.outbound.write(ByteBuffer(bytes: bytes)) }

    func send(_ frame: Frame) async throws {
        var b = ByteBuffer()
        frame.encode(into: &b)
        try await channel.outbound.write(b)
    }

    /// Waits for a frame that is not a HEARTBEAT; nil when the connection closed first or `timeout` passed.
    func next(after index: Int, timeout: Duration) async -> Frame? {
        let deadline = ContinuousClock.now + timeout
        while ContinuousClock.now < deadline {
            let f = received.withLock { frames in frames.dropFirst(index).first { if case .heartbeat = $0 { false } else { true } } }
            if let f { return f }
            if case .closed = state { return nil }
            try? await Task.sleep(for: .milliseconds(5))
        }
        return nil
    }
}

@Suite(.serialized, .tags(.large), .timeLimit(.minutes(4)))
final class HostileFloodTests {
    static let mib = 1 << 20
    let group = MultiThreadedEventLoopGroup(numberOfThreads: 2)

    init() {
        // 2,000 connections on each side of loopback: raise the soft fd limit of this process,
        // which serve (its child) inherits.
        var limit = rlimit()
        getrlimit(__rlimit_resource_t(RLIMIT_NOFILE.rawValue), &limit)
        limit.rlim_cur = max(limit.rlim_cur, min(limit.rlim_max, 16_384))
        setrlimit(__rlimit_resource_t(RLIMIT_NOFILE.rawValue), &limit)
    }

    deinit { try? group.syncShutdownGracefully() }

    /// A lab with serve running and a follower replicating a 16 MiB source that the test keeps
    /// changing; `body` floods; afterwards the target must equal the source.
    func withFollowedLab(_ body: (LabMaster, Int32) async throws -> Void) async throws {
        let lab = try LabMaster()
        defer { lab.remove() }
        var rng = SeededBytes(state: 42)
        let size = 16 * Self.mib
        let source = lab.directory.path + "/source.img"
        try Data(rng.bytes(size)).write(to: URL(fileURLWithPath: source))
        let target = try lab.target(bytes: UInt64(size))
        try lab.start()
        let pid = try #require(lab.serverPID)
        let follower = try Background(lab.sendArguments("follow", source: source, pair: "p1", target: target) + ["--interval", "0.5"],
                                      stderrPath: lab.directory.path + "/follow.err")
        defer { follower.kill9() }
        // Connected and in sync before the flood starts.
        let synced = await eventually(timeout: .seconds(30)) { lab.log.contains("pair opened") && (try? sha256(target)) == (try? sha256(source)) }
        #expect(synced, "the follower did not bring the target in sync: \(lab.log.suffix(2000))")

        // The source keeps changing during the flood: 64 KiB at a random place every 200 ms.
        let changing = Task {
            var rng = SeededBytes(state: 7)
            var changes = 0
            while !Task.isCancelled {
                let handle = try FileHandle(forWritingTo: URL(fileURLWithPath: source))
                let offset = UInt64(rng.next() % UInt64(size / 65_536)) * 65_536
                try handle.seek(toOffset: offset)
                handle.write(Data(rng.bytes(65_536)))
                try handle.synchronize()
                try handle.close()
                changes += 1
                try? await Task.sleep(for: .milliseconds(200))
            }
            return changes
        }
        do {
            try await body(lab, pid)
        } catch {
            changing.cancel()
            throw error
        }
        changing.cancel()
        let changes = try await changing.value
        let caughtUp = await eventually(timeout: .seconds(20)) { (try? sha256(target)) == (try? sha256(source)) }
        #expect(follower.process.isRunning, "the legitimate sender stopped during the flood: \((try? String(contentsOfFile: follower.stderrPath, encoding: .utf8)) ?? "")")
        #expect(caughtUp, "the target differs from the source after the flood")
        print("legitimate sender: \(changes) changes of 64 KiB followed during the flood; target byte-exact: \(caughtUp)")
    }

    /// Opens `count` hostile connections, 50 connects at a time; each then runs `act` and collects
    /// until closed, in the background.
    func flood(port: Int, count: Int, from: @escaping @Sendable (Int) -> String? = { _ in nil },
               _ act: @escaping @Sendable (HostilePeer) async throws -> Void) async -> [HostilePeer] {
        var peers: [HostilePeer] = []
        await withTaskGroup(of: HostilePeer?.self) { tasks in
            for i in 0..<count {
                if i >= 50, let p = await tasks.next() { if let p { peers.append(p) } }
                let group = self.group
                tasks.addTask {
                    guard let peer = try? await HostilePeer.connect(port: port, from: from(i), group: group) else { return nil }
                    Task.detached { await peer.collect() }
                    Task.detached { try? await act(peer) }
                    return peer
                }
            }
            for await p in tasks { if let p { peers.append(p) } }
        }
        return peers
    }

    /// Waits until every peer is closed (or `timeout`); returns how many are still open.
    func waitClosed(_ peers: [HostilePeer], timeout: Duration) async -> Int {
        _ = await eventually(timeout: timeout) { peers.allSatisfy { $0.state != .open } }
        return peers.filter { $0.state == .open }.count
    }

    static func summary(_ peers: [HostilePeer]) -> (refusedAtAccept: Int, byCode: [String: Int], longest: Duration) {
        var refused = 0
        var byCode: [String: Int] = [:]
        var longest = Duration.zero
        for p in peers {
            guard case .closed(let after, _) = p.state else { continue }
            longest = max(longest, after)
            if let error = p.frames.last(where: { if case .error = $0 { true } else { false } }), case .error(let code, _) = error {
                byCode["\(code)", default: 0] += 1
            } else {
                refused += 1
            }
        }
        return (refused, byCode, longest)
    }

    @Test func unauthenticatedFloodsCostBoundedMemoryFdsAndTime() async throws {
        try await withFollowedLab { lab, pid in
            let port = lab.port
            let before = ProcessFootprint(pid: pid)
            print("serve before the floods: \(before)")

            // Item 2: 200 connections, each sending 3 MiB of a 4 MiB frame before authenticating.
            let header: [UInt8] = [0x00, 0x40, 0x00, 0x00, 0x01]
            let chunk = [UInt8](repeating: 0x41, count: 256 << 10)
            let big = await flood(port: port, count: 200) { peer in
                try await peer.send(header)
                for _ in 0..<12 { try await peer.send(chunk) }
            }
            let bigOpen = await waitClosed(big, timeout: .seconds(15))
            let settled = await eventually(timeout: .seconds(5)) { ProcessFootprint(pid: pid).fds <= before.fds + 8 }
            #expect(settled, "serve still holds the refused connections' fds: \(ProcessFootprint(pid: pid))")
            let afterBig = ProcessFootprint(pid: pid)
            let s2 = Self.summary(big)
            print("200 × 3 MiB of a 4 MiB frame: \(big.count) connected, \(s2.refusedAtAccept) closed at accept, errors \(s2.byCode), "
                  + "longest life \(s2.longest), still open \(bigOpen); serve: \(afterBig)")
            #expect(bigOpen == 0)
            // Refused at the header; on a loaded machine a connection whose TLS handshake and header
            // come late may reach its handshake deadline first: bounded either way.
            #expect(s2.byCode.keys.allSatisfy { $0 == "frame-too-large" || $0 == "timeout" }, "\(s2.byCode)")
            #expect(s2.byCode["frame-too-large", default: 0] > 0, "\(s2.byCode)")

            // Item 3: 1,000 connections that send HELLO and then only HEARTBEATs.
            let hello = Frame.hello(Frame.Hello(minVersion: 1, maxVersion: 1, nonce: [UInt8](repeating: 9, count: 32), senderName: "flood"))
            let beating = await flood(port: port, count: 1000) { peer in
                try await peer.send(hello)
                while peer.state == .open {
                    try await peer.send(.heartbeat(unixMillis: 1))
                    try await Task.sleep(for: .seconds(1))
                }
            }
            let duringBeats = ProcessFootprint(pid: pid)
            let beatOpen = await waitClosed(beating, timeout: .seconds(25))
            let s3 = Self.summary(beating)
            print("1,000 heartbeat-only connections: \(s3.refusedAtAccept) closed at accept, errors \(s3.byCode), "
                  + "longest life \(s3.longest), still open \(beatOpen); serve during: \(duringBeats)")
            #expect(beatOpen == 0)
            #expect(s3.longest <= .seconds(13), "an unauthenticated connection lived \(s3.longest); handshake_timeout is 10 s")

            // Item 3: 2,000 idle TLS connections.
            let idle = await flood(port: port, count: 2000) { _ in }
            let duringIdle = ProcessFootprint(pid: pid)
            let idleOpen = await waitClosed(idle, timeout: .seconds(25))
            let s4 = Self.summary(idle)
            print("2,000 idle TLS connections: \(idle.count) connected, \(s4.refusedAtAccept) closed at accept or by TLS, errors \(s4.byCode), "
                  + "longest life \(s4.longest), still open \(idleOpen); serve during: \(duringIdle)")
            #expect(idleOpen == 0)
            #expect(s4.longest <= .seconds(13), "an idle connection lived \(s4.longest)")
            // Held at once: at most 64 unauthenticated plus the follower's and the process's own
            // fds, with slack for connections still closing.
            #expect(duringBeats.fds <= before.fds + 64 + 40, "fds during the heartbeat flood: \(duringBeats.fds)")
            #expect(duringIdle.fds <= before.fds + 64 + 40, "fds during the idle flood: \(duringIdle.fds)")

            // Closed connections give their fds back within the TLS shutdown timeout (1 s).
            _ = await eventually(timeout: .seconds(5)) { ProcessFootprint(pid: pid).fds <= before.fds + 8 }
            let after = ProcessFootprint(pid: pid)
            print("serve after the floods: \(after)")
            #expect(after.peakRSSKiB <= 300 * 1024, "peak RSS \(after.peakRSSKiB / 1024) MiB during the floods; the goal is ≤ 300 MiB")
            #expect(after.fds <= before.fds + 8, "fds after the floods: \(after.fds), before: \(before.fds)")
            let log = lab.log
            let saidCap = log.contains("refusing connections: max_unauthenticated_connections (64) reached")
            let saidDeadline = log.contains("no WELCOME within handshake_timeout")
            #expect(saidCap, "serve did not log the cap")
            #expect(saidDeadline, "serve did not log the handshake deadline")
        }
    }

    @Test func wrongPassphrasesFromManyAddressesAreCheckedAtMost20PerSecond() async throws {
        try await withFollowedLab { lab, pid in
            let port = lab.port
            let addresses = 150
            let window = Duration.seconds(8)
            let start = ContinuousClock.now
            let answers = Locked<[Duration]>([])
            let others = Locked<[String: Int]>([:])
            let group = self.group
            await withTaskGroup(of: Void.self) { tasks in
                for i in 0..<addresses {
                    tasks.addTask {
                        let from = "127.0.\(i / 200).\(i % 200 + 2)"
                        while ContinuousClock.now - start < window {
                            guard let peer = try? await HostilePeer.connect(port: port, from: from, group: group) else {
                                try? await Task.sleep(for: .milliseconds(50))
                                continue
                            }
                            Task.detached { await peer.collect() }
                            let nonce = [UInt8](repeating: UInt8(i & 0xFF), count: 32)
                            try? await peer.send(.hello(Frame.Hello(minVersion: 1, maxVersion: 1, nonce: nonce, senderName: "guess")))
                            guard case .challenge(let c)? = await peer.next(after: 0, timeout: .seconds(12)) else {
                                others.withLock { $0["no challenge", default: 0] += 1 }
                                try? await Task.sleep(for: .milliseconds(50))
                                continue
                            }
                            let wrong = PassphraseProof.senderMAC(key: [UInt8](repeating: 1, count: 32), senderNonce: nonce, masterNonce: c.nonce)
                            try? await peer.send(.proof(mac: wrong))
                            let answer = await peer.next(after: 1, timeout: .seconds(12))
                            if case .error(.authFailed, _)? = answer {
                                answers.withLock { $0.append(ContinuousClock.now - start) }
                            } else {
                                others.withLock { $0["\(answer.map { "\($0)".prefix(40) } ?? "closed")", default: 0] += 1 }
                            }
                        }
                    }
                }
            }
            let failed = answers.withLock { $0.sorted() }
            let elapsed = ContinuousClock.now - start
            var busiest = 0
            for (i, t) in failed.enumerated() { busiest = max(busiest, failed[i...].prefix { $0 - t < .seconds(1) }.count) }
            let seconds = Double(elapsed.components.seconds) + Double(elapsed.components.attoseconds) / 1e18
            print("wrong passphrases from \(addresses) addresses over \(elapsed): \(failed.count) answered auth-failed "
                  + "(\(String(format: "%.1f", Double(failed.count) / seconds))/s, busiest second \(busiest)); other outcomes \(others.withLock { $0 }); "
                  + "serve: \(ProcessFootprint(pid: pid))")
            #expect(failed.count >= 20, "the flood got almost no answers: \(others.withLock { $0 })")
            // Slots are 50 ms apart at serve (21 fit in a closed one-second window); the answers'
            // arrival times seen here jitter on a loaded machine, so the busiest second as seen
            // by the peers gets some slack; the rate over the whole flood is held strictly.
            #expect(busiest <= 25, "\(busiest) wrong passphrases checked within one second")
            #expect(Double(failed.count) <= 20 * seconds + 1, "\(failed.count) checks in \(elapsed)")
        }
    }
}

/// A value shared by the flood's tasks.
final class Locked<Value: Sendable>: Sendable {
    private let mutex: Mutex<Value>
    init(_ value: Value) { mutex = Mutex(value) }
    func withLock<R: Sendable>(_ body: (inout Value) -> R) -> R { mutex.withLock { body(&$0) } }
}

/// Polls `condition` every 50 ms until it holds or `timeout` passes.
func eventually(timeout: Duration, _ condition: () async -> Bool) async -> Bool {
    let deadline = ContinuousClock.now + timeout
    while ContinuousClock.now < deadline {
        if await condition() { return true }
        try? await Task.sleep(for: .milliseconds(50))
    }
    return await condition()
}
