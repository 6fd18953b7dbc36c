import Logging
import MTAgentCore
@testable import MTAgentReplication
import NIOConcurrencyHelpers
import NIOCore
import NIOPosix
import Testing

// A pair's life on the server: stopping or closing it while its connection still sends, and
// reopening it after an I/O error. The rule under test: once a stop or close has begun, nothing new
// reaches the target, and the pair is closed only after its last apply has returned — a failover's
// rollback must never meet a late target write.

private let kib = 1024

/// Frames a driver sent to its sink.
private final class SentFrames: Sendable {
    private let box = NIOLockedValueBox<[Frame]>([])
    func append(_ frame: Frame) { box.withLockedValue { $0.append(frame) } }
    var frames: [Frame] { box.withLockedValue { $0 } }
}

private func pendingWrite(seq: UInt64, offset: UInt64, _ data: [UInt8]) -> PairOp.Pending {
    PairOp.Pending(write: Frame.Write(handle: 1, seq: seq, offset: offset, sha256: sha256(data), data: buffer(data)))
}

/// Holds whoever waits until opened.
private actor Gate {
    private var open = false
    private var waiters: [CheckedContinuation<Void, Never>] = []
    func wait() async {
        if open { return }
        await withCheckedContinuation { waiters.append($0) }
    }
    func release() {
        open = true
        for w in waiters { w.resume() }
        waiters = []
    }
}

@Suite(.timeLimit(.minutes(1)))
struct PairLifecycleTests {
    /// Two connections take a pair over at the same moment while telling the old holder waits
    /// (a slow peer): one of them ends up holding the pair, and the other must know it does not —
    /// a connection that believes it holds the pair while its frames are ignored waits forever.
    @Test func twoTakeoversAtOnceLeaveOneHolderAndTellTheOther() async throws {
        let pool = NIOThreadPool(numberOfThreads: 2)
        pool.start()
        let pair = MemoryPair(name: "disk-1", size: 64 * kib, state: .inSync)
        let log = LogCapture()
        let driver = PairDriver(pair: pair, pairID: "pair-1", group: "g1", target: "disk-1", sourceSize: UInt64(64 * kib),
                                pool: pool, maxPendingBytes: 1 << 20, metrics: ServerMetrics(), logger: log.logger("driver"))
        let gate = Gate()
        let (a, b, c) = (SentFrames(), SentFrames(), SentFrames())
        _ = await driver.attach(PairSink(connection: 1, handle: 1, send: { a.append($0); await gate.wait() }))
        let attachB = Task { await driver.attach(PairSink(connection: 2, handle: 1, send: { b.append($0) })) }
        #expect(await eventually { !a.frames.isEmpty }, "B tells A, and A is slow to take it")
        let attachC = Task { await driver.attach(PairSink(connection: 3, handle: 1, send: { c.append($0) })) }
        try await Task.sleep(for: .milliseconds(200))
        await gate.release()
        let outcomes = [2: await attachB.value, 3: await attachC.value]

        let holders = [2, 3].filter { outcomes[$0] != .takenOver }
        #expect(holders.count == 1, "exactly one connection may believe it holds the pair: \(outcomes)")
        if let holder = holders.first {
            #expect(await driver.holds(connection: UInt64(holder)))
            let loser = holder == 2 ? c : b
            #expect(loser.frames.contains { if case .pairError(1, .pairTakenOver, _) = $0 { true } else { false } },
                    "the connection that lost the pair is told")
        }
        try await pool.shutdownGracefully()
    }

    /// `stop` (failover) or `close` (shutdown) begins while an apply is held on the pool; the
    /// connection sends another write and a HASH_REQUEST during the drain. Both must be refused,
    /// and `close` must come after the held apply returned, with nothing applied after it.
    @Test(arguments: ["stop", "close"])
    func endingAPairRefusesNewFramesAndClosesAfterTheLastApply(how: String) async throws {
        let pool = NIOThreadPool(numberOfThreads: 2)
        pool.start()
        let pair = MemoryPair(name: "disk-1", size: 64 * kib, state: .inSync)
        let log = LogCapture()
        let driver = PairDriver(pair: pair, pairID: "pair-1", group: "g1", target: "disk-1", sourceSize: UInt64(64 * kib),
                                pool: pool, maxPendingBytes: 1 << 20, metrics: ServerMetrics(), logger: log.logger("driver"))
        let sent = SentFrames()
        _ = await driver.attach(PairSink(connection: 1, handle: 1, send: { sent.append($0) }))

        let first = pattern(4 * kib, seed: 1)
        pair.holdNextApply()
        #expect(await driver.enqueue(pendingWrite(seq: 1, offset: 0, first), from: 1))
        #expect(await eventually { pair.isHolding }, "the first apply must be held on the pool")

        let ending = Task {
            if how == "stop" {
                await driver.stop(code: .failedOver, message: "group g1 was failed over")
            } else {
                await driver.close()
            }
        }
        // The stop is now waiting for the held apply; the connection goes on reading.
        try await Task.sleep(for: .milliseconds(200))
        let late = await driver.enqueue(pendingWrite(seq: 2, offset: UInt64(4 * kib), pattern(4 * kib, seed: 2)), from: 1)
        let lateHashes = await driver.requestHashes(offset: 0, chunkSize: 4 * kib, count: 1, from: 1)
        pair.release()
        await ending.value
        // Anything the old worker still started on the pool shows up now.
        try await Task.sleep(for: .milliseconds(300))

        #expect(!late, "a write that arrives once the \(how) began must be refused")
        #expect(!lateHashes, "a HASH_REQUEST that arrives once the \(how) began must be refused")
        #expect(pair.applied == [.write(seq: 1, offset: 0, count: 4 * kib)], "only what was queued before the \(how) reaches the target")
        #expect(pair.record.calls == ["apply", "applied", "close"], "close must follow the last apply, never precede or overlap one")
        #expect(pair.record.hashRequests == 0)
        #expect(digest(pair.bytes[(4 * kib)...]) == digest([UInt8](repeating: 0, count: 60 * kib)))
        #expect(sent.frames.contains { if case .ack(1, 1) = $0 { true } else { false } }, "the write queued before the \(how) is acked")
        // A later drain (a connection ending) must not hang on the closed driver.
        await driver.drain()
        try await pool.shutdownGracefully()
    }

    /// A commit that fails after its connection went away (nobody to tell) still marks the pair
    /// failed, so the next OPEN_PAIR opens it again instead of handing back the wedged applier.
    @Test func aFailureWithNoConnectionAttachedStillMarksThePairFailed() async throws {
        let pool = NIOThreadPool(numberOfThreads: 2)
        pool.start()
        let pair = MemoryPair(name: "disk-1", size: 64 * kib, state: .inSync)
        let driver = PairDriver(pair: pair, pairID: "pair-1", group: "g1", target: "disk-1", sourceSize: UInt64(64 * kib),
                                pool: pool, maxPendingBytes: 1 << 20, metrics: ServerMetrics(), logger: LogCapture().logger("driver"))
        _ = await driver.attach(PairSink(connection: 1, handle: 1, send: { _ in }))
        pair.holdNextApply()
        pair.failNextApply()
        #expect(await driver.enqueue(pendingWrite(seq: 1, offset: 0, pattern(4 * kib, seed: 1)), from: 1))
        #expect(await eventually { pair.isHolding })
        await driver.detach(connection: 1)  // the connection dropped while the apply ran
        pair.release()
        await driver.drain()
        #expect(pair.record.calls == ["apply", "failed"])
        #expect(await !driver.isUsable, "a driver whose pair failed must not be handed to the next OPEN_PAIR")
        await driver.close()
        try await pool.shutdownGracefully()
    }

    /// An I/O error wedges the pair (a PairApplier stays failed until closed and reopened): the next
    /// OPEN_PAIR must close the failed pair and open it again through the store, without a restart.
    @Test func aPairThatFailedOnAnIOErrorIsReopenedByTheNextOpenPair() async throws {
        let store = MemoryStore()
        let pair = store.add("disk-1", size: 64 * kib)
        try await withServer(store) { server in
            let raw = try await server.raw()
            try await raw.authenticate()
            guard case .pairState = try await raw.open(1, pairID: "pair-1", target: "disk-1", sourceSize: UInt64(64 * kib)) else {
                Issue.record("open failed"); return
            }
            let a = pattern(4 * kib, seed: 0xA)
            pair.failNextApply()
            try await raw.send(writeFrame(1, seq: 1, offset: 0, a))
            let failure = await raw.expect { if case .pairError(1, _, _) = $0 { true } else { false } }
            guard case .pairError(1, .ioError, _)? = failure else {
                Issue.record("expected PAIR_ERROR io-error, got \(String(describing: failure))"); return
            }

            // The sender opens the pair again (here on the same connection, under a new handle).
            try await raw.send(.closePair(handle: 1))
            guard case .pairState(let state) = try await raw.open(2, pairID: "pair-1", target: "disk-1", sourceSize: UInt64(64 * kib)) else {
                Issue.record("reopen failed"); return
            }
            #expect(state.durableSeq == 0)
            try await raw.send(writeFrame(2, seq: 1, offset: 0, a))
            #expect(await raw.expectAck(2, atLeast: 1, timeout: .seconds(5)), "the reopened pair must apply writes again")
            #expect(store.opens.count == 2, "the failed pair must be opened again through the store")
            #expect(pair.record.closes == 1, "the failed pair must be closed before it is opened again")
            #expect(digest(pair.bytes[0..<(4 * kib)]) == digest(a))
            raw.close()
        }
    }

    /// The reference sender's side of it: io-error drops its connection; it reconnects, opens the
    /// pair again and resends what was not acked — and this time it is applied.
    @Test func theSenderCarriesOnAfterAnIOErrorWithoutARestart() async throws {
        let store = MemoryStore()
        let pair = store.add("disk-1", size: 256 * kib)
        try await withServer(store) { server in
            let session = server.sender([PairSpec(pairID: "pair-1", group: "g1", target: "disk-1", sourceSize: UInt64(256 * kib))])
            try await session.connect(retryFor: .seconds(5))
            let a = pattern(64 * kib, seed: 1), b = pattern(64 * kib, seed: 2)
            pair.failNextApply()
            try await session.sendWrite(1, offset: 0, data: buffer(a))
            try await session.sendWrite(1, offset: UInt64(64 * kib), data: buffer(b))
            var reconnects = 0
            while true {
                do {
                    try await session.waitDurable(1)
                    break
                } catch is LinkError {
                    reconnects += 1
                    try #require(reconnects <= 3, "the pair kept failing after \(reconnects) reconnects")
                    try await session.connect(retryFor: .seconds(5))
                }
            }
            #expect(reconnects >= 1, "the io-error must have dropped the connection")
            #expect(await session.durableSeq(1) == 2)
            #expect(digest(pair.bytes[0..<(128 * kib)]) == digest(a + b))
            #expect(store.opens.count == 2, "the failed pair must be opened again through the store")
            await session.close()
        }
    }
}

/// The PAIR_ERROR code of a refusal follows its case, never its message: a message reworded
/// tomorrow still maps to the same code.
@Suite struct RefusalCodeTests {
    @Test func everyRefusalMapsToItsCodeByCase() {
        let cases: [(PairRefusal, ErrorCode)] = [
            (.sequenceGap(expected: 2, got: 3), .sequenceGap),
            (.writeOutOfRange(offset: 8000, length: 193, targetSize: 8192), .writeOutOfRange),
            (.writeOutOfRange(offset: .max, length: 1, targetSize: 8192), .writeOutOfRange),
            (.markOutOfRange(through: 9000, targetSize: 8192), .resyncRequired),
            (.outsideResync(op: "resync-done"), .resyncRequired),
            (.resyncRequired(reason: "write past the end of the target: looks like another refusal"), .resyncRequired),
            (.resyncRequired(reason: "sequence gap: a reason that reads like a gap"), .resyncRequired),
            (.failed(reason: "pwrite /dev/sdb failed: No space left on device"), .ioError),
        ]
        for (refusal, code) in cases {
            #expect(ErrorCode(refusal) == code, "\(refusal)")
        }
        #expect(PairRefusal.sequenceGap(expected: 2, got: 3).description == "sequence gap: expected 2, got 3")
    }

    /// Through the server: the refusal's case picks the code and its description is the message.
    @Test func theServerSendsTheRefusalsCodeAndDescription() async throws {
        let store = MemoryStore()
        store.add("disk-1", size: 8 * kib)
        try await withServer(store) { server in
            let raw = try await server.raw()
            try await raw.authenticate()
            guard case .pairState = try await raw.open(1, pairID: "pair-1", target: "disk-1", sourceSize: UInt64(8 * kib)) else {
                Issue.record("open failed"); return
            }
            try await raw.send([.resyncBegin(handle: 1, seq: 1), .resyncMark(handle: 1, seq: 2, through: UInt64(9 * kib))])
            let answer = await raw.expect { if case .pairError = $0 { true } else { false } }
            guard case .pairError(1, let code, let message)? = answer else { Issue.record("no PAIR_ERROR: \(String(describing: answer))"); return }
            #expect(code == .resyncRequired)
            #expect(message == PairRefusal.markOutOfRange(through: UInt64(9 * kib), targetSize: UInt64(8 * kib)).description)
            raw.close()
        }
    }
}
