import MTAgentCore
@testable import MTAgentReplication
import NIOCore
import Testing

// Pair-level rules of docs/PROTOCOL.md §5 through the real server, driven by a raw client:
// gaps, checksums, duplicates, out-of-range writes, takeover. A PAIR_ERROR concerns one pair;
// the connection stays up.

private let kib = 1024

/// Counts the PAIR_ERRORs in what a raw client received.
private func pairErrors(_ history: [Inbox.Event]) -> [(UInt32, ErrorCode, String)] {
    history.compactMap { event -> (UInt32, ErrorCode, String)? in
        if case .frame(.pairError(let h, let c, let m)) = event { return (h, c, m) }
        return nil
    }
}

private func maxAck(_ history: [Inbox.Event], handle: UInt32) -> UInt64? {
    history.compactMap { event -> UInt64? in
        if case .frame(.ack(let h, let d)) = event, h == handle { return d }
        return nil
    }.max()
}

@Suite(.timeLimit(.minutes(1)))
struct ServerPairTests {
    @Test func gapPutsThePairInResyncRequiredUntilResyncBegin() async throws {
        let store = MemoryStore()
        let pair = store.add("disk-1", size: 64 * kib)
        try await withServer(store) { server in
            let raw = try await server.raw()
            try await raw.authenticate()
            guard case .pairState(let state) = try await raw.open(1, pairID: "pair-1", target: "disk-1", sourceSize: UInt64(64 * kib)) else {
                Issue.record("open failed"); return
            }
            #expect(state.state == .inSync && state.durableSeq == 0)

            let a = pattern(4 * kib, seed: 0xA), b = pattern(4 * kib, seed: 0xB), c = pattern(4 * kib, seed: 0xC)
            try await raw.send([writeFrame(1, seq: 1, offset: 0, a), writeFrame(1, seq: 3, offset: UInt64(8 * kib), c)])
            let gap = await raw.expect { if case .pairError = $0 { true } else { false } }
            guard case .pairError(1, .sequenceGap, let message)? = gap else { Issue.record("expected PAIR_ERROR sequence-gap, got \(String(describing: gap))"); return }
            #expect(message.contains("expected 2, got 3"))
            #expect(pair.record.state == .resyncRequired)
            #expect(await server.server.pairs().first?.status.state == .resyncRequired)

            // Later frames are ignored (even the one that would fill the gap); the connection stays up.
            try await raw.send([writeFrame(1, seq: 2, offset: UInt64(4 * kib), b), writeFrame(1, seq: 4, offset: UInt64(12 * kib), b),
                                .tag(Frame.TagFrame(handle: 1, seq: 5, tagID: 1, kind: 1, sourceTime: 0, name: "t"))])
            #expect(try await raw.barrier(1), "the connection must stay up after a PAIR_ERROR")
            #expect(pair.applied == [.write(seq: 1, offset: 0, count: 4 * kib)])
            #expect(digest(Array(pair.bytes[0..<(4 * kib)])) == digest(a))
            #expect(pair.bytes[(4 * kib)...].allSatisfy { $0 == 0 }, "nothing after the gap may reach the target")
            #expect(pairErrors(await raw.history).count == 1, "one PAIR_ERROR per resync episode")
            #expect(maxAck(await raw.history, handle: 1) == 1)

            // RESYNC_BEGIN with any higher seq is the new base.
            try await raw.send([.resyncBegin(handle: 1, seq: 10), writeFrame(1, seq: 11, offset: UInt64(4 * kib), b),
                                .resyncMark(handle: 1, seq: 12, through: UInt64(64 * kib)), .resyncDone(handle: 1, seq: 13)])
            #expect(await raw.expectAck(1, atLeast: 13))
            #expect(pair.record.state == .inSync)
            #expect(digest(Array(pair.bytes[(4 * kib)..<(8 * kib)])) == digest(b))
            #expect(Array(pair.applied.suffix(4)) == [.resyncBegin(seq: 10), .write(seq: 11, offset: UInt64(4 * kib), count: 4 * kib),
                                                      .resyncMark(seq: 12, through: UInt64(64 * kib)), .resyncDone(seq: 13)])
            #expect(pairErrors(await raw.history).count == 1)
            raw.close()
        }
    }

    @Test func badChecksumRequiresResyncAndSparesOtherPairs() async throws {
        let store = MemoryStore()
        let bystanderPair = Bystander.add(to: store)
        let pair = store.add("disk-1", size: 64 * kib)
        try await withServer(store) { server in
            let bystander = try await Bystander.start(server, pair: bystanderPair)
            let raw = try await server.raw()
            try await raw.authenticate()
            guard case .pairState = try await raw.open(1, pairID: "pair-1", target: "disk-1", sourceSize: UInt64(64 * kib)) else {
                Issue.record("open failed"); return
            }
            let good = pattern(4 * kib, seed: 1), bad = pattern(4 * kib, seed: 2)
            try await raw.send([writeFrame(1, seq: 1, offset: 0, good),
                                writeFrame(1, seq: 2, offset: UInt64(4 * kib), bad, sha: sha256(good)),
                                writeFrame(1, seq: 3, offset: UInt64(8 * kib), good)])
            let error = await raw.expect { if case .pairError = $0 { true } else { false } }
            guard case .pairError(1, .checksumMismatch, let message)? = error else {
                Issue.record("expected PAIR_ERROR checksum-mismatch, got \(String(describing: error))"); return
            }
            #expect(message.contains("seq 2"))
            #expect(try await raw.barrier(1))
            #expect(pair.applied == [.write(seq: 1, offset: 0, count: 4 * kib)])
            #expect(pair.bytes[(4 * kib)...].allSatisfy { $0 == 0 }, "neither the corrupt write nor anything after it is applied")
            #expect(pair.record.requireResyncReasons.count == 1)
            #expect(pair.record.state == .resyncRequired)
            #expect(pairErrors(await raw.history).count == 1)

            try await bystander.finish()
            raw.close()
        }
    }

    @Test func writePastTheEndRequiresResync() async throws {
        let store = MemoryStore()
        let pair = store.add("disk-1", size: 64 * kib)
        try await withServer(store) { server in
            let raw = try await server.raw()
            try await raw.authenticate()
            guard case .pairState = try await raw.open(1, pairID: "pair-1", target: "disk-1", sourceSize: UInt64(64 * kib)) else {
                Issue.record("open failed"); return
            }
            try await raw.send(writeFrame(1, seq: 1, offset: UInt64(62 * kib), pattern(4 * kib, seed: 3)))
            let error = await raw.expect { if case .pairError = $0 { true } else { false } }
            guard case .pairError(1, .writeOutOfRange, _)? = error else {
                Issue.record("expected PAIR_ERROR write-out-of-range, got \(String(describing: error))"); return
            }
            #expect(pair.record.state == .resyncRequired)
            #expect(pair.bytes.allSatisfy { $0 == 0 })
            #expect(try await raw.barrier(1))
            raw.close()
        }
    }

    @Test func hashRequestWithABadChunkSizeIsABadRequestForThePairOnly() async throws {
        let store = MemoryStore()
        store.add("disk-1", size: 64 * kib)
        try await withServer(store) { server in
            let raw = try await server.raw()
            try await raw.authenticate()
            guard case .pairState = try await raw.open(1, pairID: "pair-1", target: "disk-1", sourceSize: UInt64(64 * kib)) else {
                Issue.record("open failed"); return
            }
            try await raw.send(.hashRequest(handle: 1, offset: 0, chunkSize: 5000, count: 1))
            let error = await raw.expect { if case .pairError = $0 { true } else { false } }
            guard case .pairError(1, .badRequest, _)? = error else { Issue.record("expected bad-request, got \(String(describing: error))"); return }
            #expect(try await raw.barrier(1))
            raw.close()
        }
    }

    @Test func duplicateResendAfterReconnectIsIgnoredAndAcked() async throws {
        let store = MemoryStore()
        let pair = store.add("disk-1", size: 64 * kib)
        let data = (1...4).map { pattern(4 * kib, seed: UInt8($0)) }
        let frames = (1...4).map { i in writeFrame(1, seq: UInt64(i), offset: UInt64((i - 1) * 4 * kib), data[i - 1]) }
        try await withServer(store) { server in
            let first = try await server.raw()
            try await first.authenticate()
            guard case .pairState = try await first.open(1, pairID: "pair-1", target: "disk-1", sourceSize: UInt64(64 * kib)) else {
                Issue.record("open failed"); return
            }
            try await first.send(Array(frames[0..<3]))
            #expect(await first.expectAck(1, atLeast: 3))
            first.close()
            #expect(await eventually { pair.applied.count == 3 })

            // The sender reconnects, learns durableSeq, and resends (here: more than it had to).
            let second = try await server.raw()
            try await second.authenticate()
            guard case .pairState(let state) = try await second.open(5, pairID: "pair-1", target: "disk-1", sourceSize: UInt64(64 * kib)) else {
                Issue.record("reopen failed"); return
            }
            #expect(state.durableSeq == 3)
            // Resends carry the sender's new handle.
            let resend = frames[1..<3].map { f -> Frame in
                guard case .write(var w) = f else { return f }
                w.handle = 5
                return .write(w)
            }
            try await second.send(resend)
            #expect(await second.expectAck(5, atLeast: 3), "duplicates are acked")
            // The ack of 3 may come after the first duplicate: wait until both were seen.
            #expect(await eventually { pair.record.duplicates == 2 })
            #expect(pair.applied.count == 3, "duplicates are not applied again")
            // A duplicate with other data is still a duplicate: the target keeps what was durable.
            try await second.send(writeFrame(5, seq: 2, offset: UInt64(4 * kib), pattern(4 * kib, seed: 0x77)))
            #expect(try await second.barrier(5))
            #expect(digest(Array(pair.bytes[(4 * kib)..<(8 * kib)])) == digest(data[1]))

            guard case .write(var w4) = frames[3] else { return }
            w4.handle = 5
            try await second.send(.write(w4))
            #expect(await second.expectAck(5, atLeast: 4))
            #expect(pair.applied.map(\.seq) == [1, 2, 3, 4])
            #expect(digest(Array(pair.bytes[0..<(16 * kib)])) == digest(data.flatMap { $0 }))
            #expect(pairErrors(await second.history).isEmpty)
            second.close()
        }
    }

    /// A pair already open is judged again at every OPEN_PAIR: a target refused since (unassigned,
    /// mounted…) is refused to the new connection, which takes nothing over.
    @Test func reopeningAPairWhoseTargetIsNowRefusedIsRefused() async throws {
        let store = MemoryStore()
        let pair = store.add("disk-1", size: 64 * kib)
        try await withServer(store) { server in
            let a = try await server.raw()
            try await a.authenticate()
            guard case .pairState = try await a.open(1, pairID: "pair-1", target: "disk-1", sourceSize: UInt64(64 * kib)) else {
                Issue.record("open failed"); return
            }
            store.refuse("disk-1", "target.mounted: disk-1 is mounted on /data")
            let b = try await server.raw()
            try await b.authenticate()
            let answer = try await b.open(7, pairID: "pair-1", target: "disk-1", sourceSize: UInt64(64 * kib))
            guard case .pairError(7, .targetRefused, let message) = answer else {
                Issue.record("expected PAIR_ERROR target-refused, got \(answer)"); return
            }
            #expect(message.contains("target.mounted"))
            try await b.send(writeFrame(7, seq: 1, offset: 0, pattern(4 * kib, seed: 1)))
            let closing = await b.drainUntilClosed()
            #expect(closing?.contains { if case .error(.unexpectedFrame, _) = $0 { true } else { false } } == true)
            #expect(pair.applied.isEmpty, "nothing may reach a refused target")
        }
    }

    @Test func openingThePairOnAnotherConnectionTakesItOver() async throws {
        let store = MemoryStore()
        let pair = store.add("disk-1", size: 64 * kib)
        store.add("disk-2", size: 64 * kib)
        try await withServer(store) { server in
            let a = try await server.raw()
            try await a.authenticate()
            guard case .pairState = try await a.open(1, pairID: "pair-1", target: "disk-1", sourceSize: UInt64(64 * kib)) else {
                Issue.record("open failed"); return
            }
            try await a.send(writeFrame(1, seq: 1, offset: 0, pattern(4 * kib, seed: 1)))
            #expect(await a.expectAck(1, atLeast: 1))

            let b = try await server.raw()
            try await b.authenticate()
            guard case .pairState(let state) = try await b.open(7, pairID: "pair-1", target: "disk-1", sourceSize: UInt64(64 * kib)) else {
                Issue.record("takeover open failed"); return
            }
            #expect(state.durableSeq == 1)
            let taken = await a.expect { if case .pairError = $0 { true } else { false } }
            guard case .pairError(1, .pairTakenOver, _)? = taken else {
                Issue.record("the first connection must get PAIR_ERROR pair-taken-over, got \(String(describing: taken))"); return
            }

            // The new holder gets the acks; the old one no more.
            try await b.send(writeFrame(7, seq: 2, offset: UInt64(4 * kib), pattern(4 * kib, seed: 2)))
            #expect(await b.expectAck(7, atLeast: 2))
            #expect(maxAck(await a.history, handle: 1) == 1)
            #expect(pair.applied.map(\.seq) == [1, 2])

            // The old connection itself goes on: it can open another pair.
            guard case .pairState = try await a.open(2, pairID: "pair-2", target: "disk-2", sourceSize: UInt64(64 * kib)) else {
                Issue.record("the old connection could not open another pair"); return
            }
            a.close()
            b.close()
        }
    }

    @Test func reopeningAPairInAnotherGroupOrTargetIsAConflict() async throws {
        let store = MemoryStore()
        store.add("disk-1", size: 64 * kib)
        store.add("disk-2", size: 64 * kib)
        try await withServer(store) { server in
            let a = try await server.raw()
            try await a.authenticate()
            guard case .pairState = try await a.open(1, pairID: "pair-1", group: "g1", target: "disk-1", sourceSize: UInt64(64 * kib)) else {
                Issue.record("open failed"); return
            }
            let b = try await server.raw()
            try await b.authenticate()
            let otherGroup = try await b.open(1, pairID: "pair-1", group: "g2", target: "disk-1", sourceSize: UInt64(64 * kib))
            guard case .pairError(1, .pairConflict, _) = otherGroup else { Issue.record("expected pair-conflict, got \(otherGroup)"); return }
            let otherTarget = try await b.open(2, pairID: "pair-1", group: "g1", target: "disk-2", sourceSize: UInt64(64 * kib))
            guard case .pairError(2, .pairConflict, _) = otherTarget else { Issue.record("expected pair-conflict, got \(otherTarget)"); return }
            let tooBig = try await b.open(3, pairID: "pair-1", group: "g1", target: "disk-1", sourceSize: UInt64(128 * kib))
            guard case .pairError(3, .targetRefused, _) = tooBig else { Issue.record("expected target-refused, got \(tooBig)"); return }
            // None of these took the pair from the first connection.
            try await a.send(writeFrame(1, seq: 1, offset: 0, pattern(4 * kib, seed: 1)))
            #expect(await a.expectAck(1, atLeast: 1))
            #expect(pairErrors(await a.history).isEmpty)
            a.close()
            b.close()
        }
    }

    @Test
    func aTakenOverConnectionCannotWriteToThePair() async throws {
        let store = MemoryStore()
        let pair = store.add("disk-1", size: 64 * kib)
        try await withServer(store) { server in
            let a = try await server.raw()
            try await a.authenticate()
            guard case .pairState = try await a.open(1, pairID: "pair-1", target: "disk-1", sourceSize: UInt64(64 * kib)) else {
                Issue.record("open failed"); return
            }
            let b = try await server.raw()
            try await b.authenticate()
            guard case .pairState = try await b.open(7, pairID: "pair-1", target: "disk-1", sourceSize: UInt64(64 * kib)) else {
                Issue.record("takeover open failed"); return
            }
            #expect(await a.expect { if case .pairError(1, .pairTakenOver, _) = $0 { true } else { false } } != nil)

            // The stale holder writes seq 1 after losing the pair; then the new holder writes its seq 1.
            let stale = pattern(4 * kib, seed: 0x51), fresh = pattern(4 * kib, seed: 0xF5)
            try await a.send(writeFrame(1, seq: 1, offset: 0, stale))
            try await Task.sleep(for: .milliseconds(300))
            try await b.send(writeFrame(7, seq: 1, offset: 0, fresh))
            #expect(try await b.barrier(7))
            #expect(digest(Array(pair.bytes[0..<(4 * kib)])) == digest(fresh), "the target must hold the new holder's data, not the taken-over connection's")
            #expect(pair.record.duplicates == 0, "the new holder's seq 1 must not be treated as a duplicate")
            a.close()
            b.close()
        }
    }

    /// A refusal in the same batch as the RESYNC_BEGIN that ended the previous episode must be
    /// reported: otherwise the sender believes its resync goes on while every frame is refused.
    @Test(arguments: ["gap", "checksum"])
    func refusalBatchedWithResyncBeginIsReported(_ kind: String) async throws {
        let store = MemoryStore()
        let pair = store.add("disk-1", size: 64 * kib)
        try await withServer(store) { server in
            let raw = try await server.raw()
            try await raw.authenticate()
            guard case .pairState = try await raw.open(1, pairID: "pair-1", target: "disk-1", sourceSize: UInt64(64 * kib)) else {
                Issue.record("open failed"); return
            }
            let data = pattern(4 * kib, seed: 9)
            try await raw.send([writeFrame(1, seq: 1, offset: 0, data), writeFrame(1, seq: 3, offset: 0, data)])
            #expect(await raw.expect { if case .pairError(1, .sequenceGap, _) = $0 { true } else { false } } != nil)

            // Hold the next apply so RESYNC_BEGIN and the next bad frame land in one batch.
            pair.holdNextApply()
            try await raw.send(writeFrame(1, seq: 4, offset: 0, data))
            #expect(await eventually { pair.isHolding })
            let bad = kind == "gap" ? writeFrame(1, seq: 12, offset: 0, data) : writeFrame(1, seq: 11, offset: 0, data, sha: sha256([1]))
            try await raw.send([.resyncBegin(handle: 1, seq: 10), bad])
            try await Task.sleep(for: .milliseconds(300))
            pair.release()
            let second = await raw.expect(timeout: .seconds(5)) { if case .pairError = $0 { true } else { false } }
            #expect(pair.record.state == .resyncRequired, "precondition: the store refused the frame after RESYNC_BEGIN")
            #expect(pair.applied.last == .resyncBegin(seq: 10), "precondition: RESYNC_BEGIN and the bad frame were applied in one batch")
            #expect(second != nil, "the new resync episode's refusal must be reported (PAIR_ERROR); without it the sender waits for acks forever")
            raw.close()
        }
    }
}
