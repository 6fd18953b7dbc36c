import Glibc
import MTAgentCore
@testable import MTAgentReplication
import NIOCore
import NIOPosix
import Testing

// A sender that starts where an earlier one stopped (docs/PROTOCOL.md §6, docs/sender.md
// "Resuming"): it continues the MT's interrupted resync instead of starting it over, and it
// resyncs a pair its last run left with unacknowledged changes.

@Suite(.timeLimit(.minutes(1)))
struct SenderResumeTests {
    static let chunk = 4096
    static let windowChunks = 64
    static let window = chunk * windowChunks

    /// A target an earlier sender resynced up to `reached` (seq `durable`), then was killed.
    /// Chunk 3, inside the covered part, differs from the source: something a live source
    /// changed after the earlier run compared it.
    static func halfResynced(_ source: [UInt8], reached: Int, durable: UInt64, store: MemoryStore) -> MemoryPair {
        var target = [UInt8](repeating: 0, count: source.count)
        target.replaceSubrange(0..<reached, with: source[0..<reached])
        target[3 * chunk + 5] ^= 0xFF
        let pair = store.add("disk-1", size: source.count, state: .resyncing, contents: target)
        pair.setRecord { r in
            r.durableSeq = durable
            r.resyncOffset = UInt64(reached)
        }
        return pair
    }

    func run(_ store: MemoryStore, source: [UInt8], _ body: (Replicator, SenderSession) async throws -> Void) async throws {
        let dir = try TempDir()
        defer { dir.remove() }
        let path = dir.path + "/source.img"
        try writeFile(path, source)
        try await withServer(store) { server in
            let session = server.sender([PairSpec(pairID: "pair-1", group: "g1", target: "disk-1", sourceSize: UInt64(source.count))])
            try await session.connect(retryFor: .seconds(5))
            let pool = NIOThreadPool(numberOfThreads: 2)
            pool.start()
            var options = Replicator.Options()
            options.windowChunks = Self.windowChunks
            let replicator = Replicator(session: session, sources: [1: try SourceDevice(path: path)], pool: pool, options: options,
                                        logger: server.senderLog.logger("replicator"))
            do {
                try await body(replicator, session)
            } catch {
                try? await pool.shutdownGracefully()
                await session.close()
                throw error
            }
            try await pool.shutdownGracefully()
            await session.close()
        }
    }

    static func marks(_ applied: [AppliedOp]) -> [UInt64] {
        applied.compactMap { if case .resyncMark(_, let through) = $0 { through } else { nil } }
    }

    @Test func resyncContinuesTheMastersResyncWithoutBeginningAgain() async throws {
        let size = 10 * Self.window
        let source = pattern(size, seed: 9)
        let reached = 4 * Self.window + 1000  // not on a chunk boundary: the chunk it is in is sent again
        let store = MemoryStore()
        let pair = Self.halfResynced(source, reached: reached, durable: 41, store: store)
        try await run(store, source: source) { replicator, session in
            #expect(await session.report(1)?.state == .resyncing)
            try await replicator.resync()
        }
        let applied = pair.applied
        #expect(!applied.contains { if case .resyncBegin = $0 { true } else { false } },
                "RESYNC_BEGIN resets the MT's progress to 0: a continuation must not send it")
        #expect(applied.first?.seq == 42, "the continuation goes on at the MT's durableSeq + 1")
        #expect(applied.map(\.seq) == Array(42...(41 + UInt64(applied.count))), "no gap")
        let from = UInt64(reached / Self.chunk * Self.chunk)
        #expect(pair.record.hashOffsets.allSatisfy { $0 >= from }, "hash requests before the MT's mark: \(pair.record.hashOffsets)")
        #expect(pair.record.hashOffsets.first == from)
        let marks = Self.marks(applied)
        #expect(marks.first.map { $0 > UInt64(reached) } == true && marks == marks.sorted(), "the MT's progress only moves on: \(marks)")
        #expect(applied.last.map { if case .resyncDone = $0 { true } else { false } } == true)
        #expect(pair.record.state == .inSync)
        // What lies after the mark was copied; what the MT had covered was trusted (resync copies
        // a quiet source), so chunk 3 still differs.
        var expected = source
        expected[3 * Self.chunk + 5] ^= 0xFF
        #expect(digest(pair.bytes) == digest(expected))
    }

    @Test func followsContinuationAlsoRechecksWhatTheEarlierRunCovered() async throws {
        let size = 6 * Self.window
        let source = pattern(size, seed: 4)
        let reached = 3 * Self.window
        let store = MemoryStore()
        let pair = Self.halfResynced(source, reached: reached, durable: 7, store: store)
        try await run(store, source: source) { replicator, _ in
            var follow = Replicator.FollowOptions()
            follow.cycles = 0
            try await replicator.follow(follow)
        }
        let applied = pair.applied
        #expect(!applied.contains { if case .resyncBegin = $0 { true } else { false } })
        #expect(applied.first?.seq == 8)
        #expect(Self.marks(applied).allSatisfy { $0 > UInt64(reached) }, "a re-check must not move the MT's mark back")
        #expect(digest(pair.bytes) == digest(source), "the live source's change before the mark is found and sent")
        let writes = pair.writesApplied.compactMap { if case .write(_, let offset, _) = $0 { offset } else { nil } }
        #expect(writes.contains(UInt64(3 * Self.chunk)))
        #expect(pair.record.state == .inSync)
    }
}

extension SenderResumeTests {
    /// `resync` trusts what an interrupted resync covered (its source is quiet), unless the last run
    /// ended without its acks: then the source may have changed below the mark too.
    @Test func aDirtyContinuationInResyncModeAlsoRechecksWhatTheEarlierRunCovered() async throws {
        let size = 6 * Self.window
        let source = pattern(size, seed: 5)
        let reached = 3 * Self.window
        let store = MemoryStore()
        let pair = Self.halfResynced(source, reached: reached, durable: 9, store: store)
        try await run(store, source: source) { replicator, session in
            await session.requireResync(1)
            try await replicator.resync()
        }
        let applied = pair.applied
        #expect(!applied.contains { if case .resyncBegin = $0 { true } else { false } }, "the MT's progress is kept")
        #expect(Self.marks(applied).allSatisfy { $0 > UInt64(reached) })
        #expect(digest(pair.bytes) == digest(source), "the change below the mark is found and sent")
        #expect(pair.record.state == .inSync)
    }

    @Test func aPairTheLastRunLeftDirtyIsResyncedThoughTheMasterSaysInSync() async throws {
        let size = 4 * Self.window
        let source = pattern(size, seed: 2)
        var target = source
        target[2 * Self.window + 77] ^= 0x55  // a write the killed run put on the source, never acked
        let store = MemoryStore()
        let pair = store.add("disk-1", size: size, state: .inSync, contents: target)
        pair.setRecord { $0.durableSeq = 100 }
        try await run(store, source: source) { replicator, session in
            // Without the marker the replay would trust the MT's in-sync and send only the trace.
            await session.requireResync(1)
            try await replicator.replay(Trace(ops: [], lines: []))
        }
        let applied = pair.applied
        #expect(applied.first.map { if case .resyncBegin = $0 { true } else { false } } == true)
        #expect(digest(pair.bytes) == digest(source))
        #expect(pair.record.state == .inSync)
    }
}

/// The state a run leaves for the next one (docs/sender.md "Resuming").
@Suite struct SenderRunMarkerTests {
    static let fingerprint = String(repeating: "ab", count: 32)

    /// A marker taken right after an earlier one of this process was released. Other tests start
    /// processes: a child forked in between holds a copy of the lock's descriptor until it execs
    /// (the descriptor is close-on-exec), so the lock may stay taken for a moment.
    static func next(_ state: String, _ pairID: String, fingerprint: String = fingerprint) throws -> SenderRunMarker {
        for _ in 0..<100 {
            do {
                return try SenderRunMarker(directory: state, fingerprint: fingerprint, pairID: pairID, describing: "mode = replay")
            } catch let error as SenderError where "\(error)".contains("another mt-agent send is running") {
                usleep(20_000)
            }
        }
        return try SenderRunMarker(directory: state, fingerprint: fingerprint, pairID: pairID, describing: "mode = replay")
    }

    @Test func aRunThatDoesNotEndCleanlyLeavesTheMarkerForTheNext() throws {
        let dir = try TempDir()
        defer { dir.remove() }
        let state = dir.path + "/state/send"
        do {
            let first = try SenderRunMarker(directory: state, fingerprint: Self.fingerprint, pairID: "p1", describing: "mode = replay")
            #expect(!first.wasDirty, "nothing ran before")
        }  // killed: never marked clean
        do {
            let second = try Self.next(state, "p1")
            #expect(second.wasDirty)
            // Another pair, or the same name on another MT, is another marker.
            #expect(!(try SenderRunMarker(directory: state, fingerprint: Self.fingerprint, pairID: "p2", describing: "").wasDirty))
            #expect(!(try SenderRunMarker(directory: state, fingerprint: String(repeating: "cd", count: 32), pairID: "p1", describing: "").wasDirty))
            try second.markClean()
        }  // the run ends: its lock goes with it
        let third = try Self.next(state, "p1")
        #expect(!third.wasDirty, "a clean end removes the marker")
    }

    @Test func oneSenderPerPairAndThePairIDIsNeverAPath() throws {
        let dir = try TempDir()
        defer { dir.remove() }
        let state = dir.path + "/state"
        let running = try SenderRunMarker(directory: state, fingerprint: Self.fingerprint, pairID: "../../escape", describing: "")
        #expect(throws: SenderError.self) {
            _ = try SenderRunMarker(directory: state, fingerprint: Self.fingerprint, pairID: "../../escape", describing: "")
        }
        do {
            _ = try SenderRunMarker(directory: state, fingerprint: Self.fingerprint, pairID: "../../escape", describing: "")
        } catch {
            #expect("\(error)".contains("another mt-agent send is running for pair ../../escape"), "\(error)")
        }
        // Only hashed names, all inside the state directory.
        var names: [String] = []
        let d = try #require(opendir(state))
        while let entry = readdir(d) {
            let name = withUnsafeBytes(of: entry.pointee.d_name) { String(decoding: $0.prefix { $0 != 0 }, as: UTF8.self) }
            if name != "." && name != ".." { names.append(name) }
        }
        closedir(d)
        #expect(names.sorted().count == 2 && names.allSatisfy { $0.count == 64 + 5 || $0.count == 64 + 6 }, "\(names)")
        #expect(access(dir.path + "/escape", F_OK) != 0 && access(dir.path + "/../escape", F_OK) != 0)
        withExtendedLifetime(running) {}
    }
}
