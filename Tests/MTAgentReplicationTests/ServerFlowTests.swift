import MTAgentCore
@testable import MTAgentReplication
import NIOConcurrencyHelpers
import NIOCore
import Testing

// Flow control (docs/PROTOCOL.md §5) and graceful shutdown, with the real SenderSession and a
// store that can be held or slowed.

/// Sends `count` writes of `size` bytes in the background, counting the ones `sendWrite` returned
/// from, then waits until all are durable.
struct BackgroundWriter {
    let sent = NIOLockedValueBox(0)
    let task: Task<Void, Error>
    let expected: [UInt8]

    init(session: SenderSession, count: Int, size: Int) {
        var expected = [UInt8]()
        for i in 0..<count { expected += pattern(size, seed: UInt8(truncatingIfNeeded: i)) }
        self.expected = expected
        let sent = self.sent
        let all = expected
        task = Task {
            for i in 0..<count {
                try await session.sendWrite(1, offset: UInt64(i * size), data: buffer(Array(all[(i * size)..<((i + 1) * size)])))
                sent.withLockedValue { $0 += 1 }
            }
            try await session.waitDurable(1)
        }
    }

    var count: Int { sent.withLockedValue { $0 } }

    /// Waits until the count stops moving for `quiet` (or `limit` passes); returns it.
    func settle(quiet: Duration = .milliseconds(500), limit: Duration = .seconds(8)) async -> Int {
        let end = ContinuousClock.now + limit
        var last = count
        var since = ContinuousClock.now
        while ContinuousClock.now < end {
            try? await Task.sleep(for: .milliseconds(20))
            let now = count
            if now != last { last = now; since = ContinuousClock.now } else if ContinuousClock.now - since >= quiet { break }
        }
        return last
    }
}

@Suite(.timeLimit(.minutes(1)))
struct ServerFlowTests {
    static let write = 256 << 10

    @Test func serverStopsReadingWhileAPairHasTooMuchPending() async throws {
        let maxPending = 1 << 20
        let count = 128  // 32 MiB: more than socket buffers can hide
        let store = MemoryStore()
        let pair = store.add("disk-1", size: count * Self.write)
        pair.holdNextApply()
        try await withServer(store, maxPendingBytesPerPair: maxPending) { server in
            let session = server.sender([PairSpec(pairID: "pair-1", group: "g1", target: "disk-1", sourceSize: UInt64(count * Self.write))])
            try await session.connect(retryFor: .seconds(5))
            let writer = BackgroundWriter(session: session, count: count, size: Self.write)
            #expect(await eventually { pair.isHolding }, "the first apply must start")
            let sentWhileHeld = await writer.settle()
            pair.release()
            try await writer.task.value

            #expect(sentWhileHeld < count, "a held target must eventually slow the sender through TCP (sent \(sentWhileHeld) of \(count))")
            let batches = pair.record.batchBytes
            let bound = maxPending + Self.write
            #expect(batches.count >= 2)
            // While the first apply was held, the server may queue at most maxPending (+ the one
            // write that crossed it) before it stops reading: the next batch holds what it queued.
            #expect(batches.dropFirst().first.map { $0 <= bound } == true, "the batch queued while the target was held: \(batches.prefix(3)) > \(bound)")
            #expect(batches.max()! <= bound, "a batch bigger than maxPendingBytesPerPair + one write: \(batches.max()!)")
            #expect(digest(pair.bytes) == digest(writer.expected))
            #expect(pair.applied.map(\.seq) == Array(1...UInt64(count)))
            #expect(await session.durableSeq(1) == UInt64(count))
            await session.close()
        }
    }

    @Test func senderKeepsAtMostMaxUnackedBytesInFlight() async throws {
        let maxUnacked = 1 << 20
        let count = 32
        let store = MemoryStore()
        let pair = store.add("disk-1", size: count * Self.write)
        pair.holdNextApply()
        try await withServer(store) { server in
            let session = server.sender([PairSpec(pairID: "pair-1", group: "g1", target: "disk-1", sourceSize: UInt64(count * Self.write))],
                                        maxUnackedBytes: maxUnacked)
            try await session.connect(retryFor: .seconds(5))
            let writer = BackgroundWriter(session: session, count: count, size: Self.write)
            #expect(await eventually { pair.isHolding })
            let sentWhileHeld = await writer.settle()
            // Nothing is acked while the first apply is held: the sender stops once more than
            // maxUnacked is outstanding (it may cross the limit by one write).
            let limit = maxUnacked / Self.write + 1
            #expect(sentWhileHeld <= limit, "sent \(sentWhileHeld) writes of \(Self.write) bytes without an ack; limit \(limit)")
            #expect(sentWhileHeld >= 1)
            pair.release()
            try await writer.task.value
            #expect(digest(pair.bytes) == digest(writer.expected))
            #expect(pair.applied.map(\.seq) == Array(1...UInt64(count)))
            await session.close()
        }
    }

    @Test
    func gracefulShutdownAcksEverythingItApplied() async throws {
        let count = 20
        let size = 64 << 10
        let store = MemoryStore()
        let pair = store.add("disk-1", size: count * size)
        pair.holdNextApply()
        let server = try await TestServer.start(store: store)
        let session = server.sender([PairSpec(pairID: "pair-1", group: "g1", target: "disk-1", sourceSize: UInt64(count * size))])
        try await session.connect(retryFor: .seconds(5))
        for i in 0..<count {
            try await session.sendWrite(1, offset: UInt64(i * size), data: buffer(pattern(size, seed: UInt8(i))))
        }
        #expect(await eventually { pair.isHolding })
        try await Task.sleep(for: .milliseconds(200))  // let the server read what was sent
        #expect(await session.durableSeq(1) == 0, "precondition: writes are unacked when shutdown starts")

        let shutdown = Task { await server.serviceGroup.triggerGracefulShutdown() }
        try await Task.sleep(for: .milliseconds(100))
        pair.release()
        await shutdown.value
        let result = await server.runTask.result
        if case .failure(let error) = result { Issue.record("run ended with \(error)") }

        let applied = pair.record.durableSeq
        #expect(applied > 0, "what the server had read is made durable")
        #expect(pair.record.closes == 1, "every pair is closed at shutdown")
        // Everything made durable was acknowledged before the connection closed.
        await eventually(timeout: .seconds(2)) { await session.durableSeq(1) == applied }
        let acked = await session.durableSeq(1)
        #expect(acked == applied, "the store applied \(applied) frames but the sender saw acks up to \(acked)")
        #expect(server.log.contains("stopped: everything acknowledged is durable"))
        await session.close()
        await server.stop()
    }
}
