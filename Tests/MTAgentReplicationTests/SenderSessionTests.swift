import Glibc
import MTAgentCore
@testable import MTAgentReplication
import NIOConcurrencyHelpers
import NIOCore
import NIOPosix
import Testing

// The real SenderSession and Replicator against the real ReplicationServer over TLS
// (docs/PROTOCOL.md §3, §5, §6).

@Suite(.timeLimit(.minutes(1)))
struct SenderSessionTests {
    @Test func happyPathWritesTagsAndAcks() async throws {
        let store = MemoryStore()
        let size = 1 << 20
        let pair = store.add("disk-1", size: size)
        try await withServer(store) { server in
            let spec = PairSpec(pairID: "pair-1", group: "group-1", target: "disk-1", sourceSize: UInt64(size))
            let session = server.sender([spec])
            try await session.connect(retryFor: .seconds(5))
            #expect(await session.report(1)?.state == .inSync)
            #expect(store.opens == [MemoryStore.Open(pairID: "pair-1", group: "group-1", target: "disk-1", sourceSize: UInt64(size))])

            var expected = [UInt8](repeating: 0, count: size)
            let chunk = 64 << 10
            for i in 0..<16 {
                let data = pattern(chunk, seed: UInt8(i))
                expected.replaceSubrange((i * chunk)..<((i + 1) * chunk), with: data)
                try await session.sendWrite(1, offset: UInt64(i * chunk), data: buffer(data))
            }
            try await session.sendTag(1, tagID: 100, kind: .crash, name: "crash-100", sourceTime: 1)
            // Overwrites after the tag, unaligned.
            let late = pattern(10_000, seed: 0xEE)
            expected.replaceSubrange(12_345..<(12_345 + late.count), with: late)
            try await session.sendWrite(1, offset: 12_345, data: buffer(late))
            try await session.sendTag(1, tagID: 101, kind: .app, name: "pre-upgrade", sourceTime: 2)
            try await session.waitDurable(1)

            // 16 writes, tag, write, tag: seq 1...19, all acked.
            #expect(await session.durableSeq(1) == 19)
            #expect(digest(pair.bytes) == digest(expected))
            let applied = pair.applied
            #expect(applied.map(\.seq) == Array(1...19))
            #expect(applied[16] == .tag(seq: 17, tagID: 100, kind: .crash, name: "crash-100"))
            #expect(applied[17] == .write(seq: 18, offset: 12_345, count: 10_000))
            #expect(applied[18] == .tag(seq: 19, tagID: 101, kind: .app, name: "pre-upgrade"))
            #expect(pair.record.duplicates == 0)
            #expect(pair.record.refused == 0)
            let stats = await session.stats
            #expect(stats.writes == 17)
            #expect(stats.tags == 2)
            #expect(stats.bytesSent == UInt64(16 * chunk + 10_000))
            await session.close()
        }
        #expect(pair.record.closes == 1, "shutdown closes every open pair")
    }

    @Test func wrongPassphraseIsRefusedWhileAnotherPairGoesOn() async throws {
        let store = MemoryStore()
        let bystanderPair = Bystander.add(to: store)
        store.add("disk-1", size: 1 << 20)
        try await withServer(store) { server in
            let bystander = try await Bystander.start(server, pair: bystanderPair)

            // The real sender: LinkError.authentication, not retried.
            let session = server.sender([PairSpec(pairID: "pair-1", group: "g1", target: "disk-1", sourceSize: 1 << 20)],
                                        passphrase: "wrong passphrase")
            do {
                try await session.connect(retryFor: .seconds(30))
                Issue.record("connect with a wrong passphrase succeeded")
            } catch let error as LinkError {
                guard case .authentication = error else {
                    Issue.record("expected LinkError.authentication, got \(error)")
                    return
                }
                #expect(!error.isRetryable)
            }

            // On the wire: ERROR auth-failed, then the connection ends.
            let raw = try await server.raw()
            let answer = try await raw.handshake(key: TestKeys.wrongKey)
            guard case .error(let code, let message) = answer else {
                Issue.record("expected ERROR auth-failed, got \(answer)")
                return
            }
            #expect(code == .authFailed)
            #expect(message.contains("passphrase"))
            #expect(await raw.drainUntilClosed() == [], "nothing after ERROR auth-failed but the close")

            // The failure is logged with the peer address; neither attempt opened anything.
            let failures = server.log.lines.filter { $0.message.contains("passphrase proof failed") }
            #expect(failures.count == 2)
            #expect(failures.allSatisfy { $0.metadata["peer"]?.hasPrefix("127.0.0.1:") == true })
            #expect(store.opens.map(\.pairID) == ["bystander"])

            try await bystander.finish()
            raw.close()
        }
    }

    @Test func repeatedPassphraseFailuresAreSlowedDown() async throws {
        // §3.2: the answer is delayed 1 s after the 3rd consecutive failure from an address.
        let store = MemoryStore()
        try await withServer(store) { server in
            for _ in 0..<3 {
                let raw = try await server.raw()
                guard case .error(.authFailed, _) = try await raw.handshake(key: TestKeys.wrongKey) else {
                    Issue.record("expected auth-failed"); return
                }
                raw.close()
            }
            let raw = try await server.raw()
            let start = ContinuousClock.now
            let answer = try await raw.handshake(key: TestKeys.wrongKey)
            let elapsed = ContinuousClock.now - start
            guard case .error(.authFailed, _) = answer else { Issue.record("expected auth-failed, got \(answer)"); return }
            #expect(elapsed >= .milliseconds(900), "the 4th failure must be answered after at least 1 s, took \(elapsed)")
            raw.close()

            // The right passphrase still gets in (after the delay) and clears the record.
            let good = try await server.raw()
            guard case .welcome = try await good.handshake() else { Issue.record("the right passphrase was refused"); return }
            good.close()
            let after = try await server.raw()
            let start2 = ContinuousClock.now
            _ = try await after.handshake(key: TestKeys.wrongKey)
            #expect(ContinuousClock.now - start2 < .milliseconds(900), "a success clears the failure count")
            after.close()
        }
    }

    @Test func wrongFingerprintSendsNothing() async throws {
        let store = MemoryStore()
        store.add("disk-1", size: 1 << 20)
        try await withServer(store) { server in
            let pinned = String(repeating: "ab", count: 32)
            let session = server.sender([PairSpec(pairID: "pair-1", group: "g1", target: "disk-1", sourceSize: 1 << 20)], fingerprint: pinned)
            do {
                try await session.connect(retryFor: .seconds(30))
                Issue.record("connect to a server with another certificate succeeded")
            } catch let error as LinkError {
                #expect(error == .fingerprintMismatch(presented: TestIdentity.shared.fingerprint, expected: pinned),
                        "the presented fingerprint must be the certificate's DER SHA-256, as openssl computes it")
                #expect(!error.isRetryable)
            }
            // Give a HELLO that might have slipped out time to arrive, then check none did.
            try await Task.sleep(for: .milliseconds(200))
            #expect(store.opens.isEmpty)
            #expect(!server.log.contains("hello"), "the server must not have received HELLO: \(server.log.lines.map(\.message))")
            #expect(!server.log.contains("passphrase proof failed"))

            // The right pin works against the same server.
            let good = server.sender([PairSpec(pairID: "pair-1", group: "g1", target: "disk-1", sourceSize: 1 << 20)])
            try await good.connect(retryFor: .seconds(5))
            await good.close()
        }
    }

    @Test func unassignedTargetIsRefusedWithTheStoresMessage() async throws {
        let store = MemoryStore()
        store.add("disk-1", size: 1 << 20)
        store.refuse("disk-rule", "target.rule: disk-rule is mounted at /data — unmount it first")
        try await withServer(store) { server in
            let session = server.sender([PairSpec(pairID: "pair-x", group: "g1", target: "disk-unassigned", sourceSize: 1 << 20)])
            do {
                try await session.connect(retryFor: .seconds(30))
                Issue.record("a pair onto an unassigned target was opened")
            } catch let error as SenderError {
                guard case .pairRefused(let pair, let code, let message) = error else { Issue.record("got \(error)"); return }
                #expect(pair == "pair-x")
                #expect(code == .targetRefused)
                #expect(message == MemoryStore.unassignedMessage("disk-unassigned"))
                #expect(error.description.contains("pair-x") && error.description.contains("target.assigned"))
            }
            await session.close()

            // On the wire: PAIR_ERROR target-refused with the store's exact message; the connection
            // and its other pairs go on.
            let raw = try await server.raw()
            try await raw.authenticate()
            let refused = try await raw.open(3, pairID: "pair-y", target: "disk-rule", sourceSize: 1 << 20)
            #expect(refused == .pairError(handle: 3, code: .targetRefused, message: "target.rule: disk-rule is mounted at /data — unmount it first"))
            let unassigned = try await raw.open(4, pairID: "pair-z", target: "disk-nowhere", sourceSize: 1 << 20)
            #expect(unassigned == .pairError(handle: 4, code: .targetRefused, message: MemoryStore.unassignedMessage("disk-nowhere")))
            let ok = try await raw.open(5, pairID: "pair-ok", target: "disk-1", sourceSize: 1 << 20)
            guard case .pairState(let state) = ok else { Issue.record("a valid pair after refusals: \(ok)"); return }
            #expect(state.state == .inSync)
            // A refused handle is not open: a WRITE on it is a connection error.
            try await raw.send(writeFrame(3, seq: 1, offset: 0, [1, 2, 3]))
            let end = await raw.drainUntilClosed()
            #expect(end?.contains { if case .error(.unexpectedFrame, _) = $0 { true } else { false } } == true)
        }
    }

    @Test func resyncWritesOnlyTheDifferingChunks() async throws {
        let chunk = 4096
        let size = 1024 * chunk + 1000  // the last chunk is short
        let source = pattern(size, seed: 42)
        var target = source
        // Chunks 3, 700 and 701 (one run), and the short last chunk differ.
        for c in [3, 700, 701] { target[c * chunk + 17] ^= 0xFF }
        target[size - 1] ^= 0x01

        let dir = try TempDir()
        defer { dir.remove() }
        let path = dir.path + "/source.img"
        try writeFile(path, source)

        let store = MemoryStore()
        let pair = store.add("disk-1", size: size, state: .new, contents: target)
        try await withServer(store) { server in
            let session = server.sender([PairSpec(pairID: "pair-1", group: "g1", target: "disk-1", sourceSize: UInt64(size))])
            try await session.connect(retryFor: .seconds(5))
            #expect(await session.report(1)?.state == .new)
            #expect(await session.needsResync(1))
            let pool = NIOThreadPool(numberOfThreads: 2)
            pool.start()
            var options = Replicator.Options()
            options.windowChunks = 256  // 1 MiB windows: several HASH_REQUESTs, one ahead
            let replicator = Replicator(session: session, sources: [1: try SourceDevice(path: path)], pool: pool, options: options,
                                        logger: server.log.logger("replicator"))
            try await replicator.resync()
            try await pool.shutdownGracefully()

            #expect(digest(pair.bytes) == digest(source), "after a resync the target equals the source")
            let writes = pair.writesApplied.map { op -> [Int] in
                guard case .write(_, let offset, let count) = op else { return [] }
                return [Int(offset), count]
            }
            #expect(writes == [[3 * chunk, chunk], [700 * chunk, 2 * chunk], [1024 * chunk, 1000]],
                    "only the differing chunks are sent, adjacent ones as one write")
            #expect(pair.record.state == .inSync)
            #expect(pair.record.hashRequests == 5, "1025 chunks in 256-chunk windows")
            let applied = pair.applied
            #expect(applied.first.map { if case .resyncBegin = $0 { true } else { false } } == true)
            #expect(applied.last.map { if case .resyncDone = $0 { true } else { false } } == true)
            let marks = applied.compactMap { op -> UInt64? in
                if case .resyncMark(_, let through) = op { return through }
                return nil
            }
            #expect(marks == [1, 2, 3, 4].map { UInt64($0 * 256 * chunk) } + [UInt64(size)])
            let stats = await session.stats
            #expect(stats.hashedChunks == 1025)
            #expect(stats.differingChunks == 4)
            #expect(stats.writes == 3)
            #expect(await session.durableSeq(1) == applied.last?.seq)
            await session.close()
        }
    }

    /// §8 keeps a connection alive with HEARTBEATs, and §3.2 makes a sender wait (scrypt on the
    /// sender; the throttle delay on the MT). A heartbeat interval shorter than that wait must not
    /// break the handshake.
    @Test(arguments: ["slow key derivation", "throttled answer"])
    func handshakeSurvivesHeartbeats(_ wait: String) async throws {
        let store = MemoryStore()
        store.add("disk-1", size: 1 << 20)
        // 600 ms: shorter than either wait, yet 3 × 600 ms leaves a loaded machine room between frames.
        try await withServer(store, heartbeat: .milliseconds(600)) { server in
            if wait == "throttled answer" {
                // Three failures: the next answer is held 1 s (> the 600 ms heartbeat).
                for _ in 0..<3 {
                    let raw = try await server.raw()
                    _ = try await raw.handshake(key: TestKeys.wrongKey)
                    raw.close()
                }
            }
            let session = server.sender([PairSpec(pairID: "pair-1", group: "g1", target: "disk-1", sourceSize: 1 << 20)],
                                        heartbeat: .milliseconds(600),
                                        derivationDelay: wait == "slow key derivation" ? .seconds(2) : .zero)
            try await session.connect(retryFor: .zero)
            #expect(await session.report(1)?.state == .inSync)
            await session.close()
        }
    }
}

/// §3.2: the scrypt parameters come from the wire, so a sender checks them before it derives
/// (the memory is 128 × n × r bytes) and refuses, without retrying, what no honest MT sends.
@Suite(.timeLimit(.minutes(1)))
struct SenderChallengeBoundsTests {
    @Test(arguments: [
        (UInt64.max, UInt32(8), UInt32(1)),      // n past Int: used to trap in Int(n)
        (UInt64(1) << 30, UInt32(8), UInt32(1)), // a power of two, but 1 TiB
        (UInt64(1) << 14 + 1, UInt32(8), UInt32(1)), // not a power of two
        (UInt64(1) << 14, UInt32.max, UInt32(1)),
        (UInt64(1) << 14, UInt32(8), UInt32(1) << 20),
        (UInt64(1) << 20, UInt32(16), UInt32(1)), // 2 GiB
    ])
    func absurdParametersAreRefusedBeforeDeriving(_ n: UInt64, _ r: UInt32, _ p: UInt32) async throws {
        let store = MemoryStore()
        store.add("disk-1", size: 1 << 20)
        let credentials = MasterCredentials(key: TestKeys.key, salt: TestKeys.credentials.salt, n: n, r: r, p: p)
        try await withServer(store, credentials: credentials) { server in
            let derivations = NIOLockedValueBox(0)
            let configuration = SenderConfiguration(host: "127.0.0.1", port: server.port, fingerprint: TestIdentity.shared.fingerprint,
                                                    senderName: "test-sender") { _, _, _, _ in
                derivations.withLockedValue { $0 += 1 }
                return TestKeys.key
            }
            let session = SenderSession(configuration: configuration,
                                        pairs: [PairSpec(pairID: "pair-1", group: "g1", target: "disk-1", sourceSize: 1 << 20)],
                                        logger: server.senderLog.logger("sender"))
            let start = ContinuousClock.now
            do {
                try await session.connect(retryFor: .seconds(30))
                Issue.record("a CHALLENGE with n=\(n) r=\(r) p=\(p) was accepted")
            } catch let error as LinkError {
                guard case .authentication(let message) = error else {
                    Issue.record("expected LinkError.authentication, got \(error)")
                    return
                }
                #expect(message.contains("scrypt"), "\(message)")
                #expect(!error.isRetryable)
            }
            // A retry would go on for the 30 s given to connect; a loaded machine may take a few seconds.
            #expect(ContinuousClock.now - start < .seconds(15), "refused parameters are not retried")
            #expect(derivations.withLockedValue { $0 } == 0, "the key was derived with parameters from the wire before they were checked")
            #expect(store.opens.isEmpty)
            await session.close()
        }
    }

    @Test func theStandardParametersAndTheLabsAreAccepted() {
        #expect(ScryptBounds.problem(n: 1 << 17, r: 8, p: 1) == nil)
        #expect(ScryptBounds.problem(n: 1 << 14, r: 8, p: 1) == nil)
        #expect(ScryptBounds.problem(n: 1 << 20, r: 8, p: 1) == nil, "1 GiB, the most")
        #expect(ScryptBounds.problem(n: 1 << 20, r: 8, p: 16) == nil)
        #expect(ScryptBounds.problem(n: 1 << 9, r: 8, p: 1) != nil)
        #expect(ScryptBounds.problem(n: 0, r: 8, p: 1) != nil)
        #expect(ScryptBounds.problem(n: 1 << 14, r: 0, p: 1) != nil)
        #expect(ScryptBounds.problem(n: 1 << 14, r: 8, p: 0) != nil)
    }
}
