import MTAgentCore
@testable import MTAgentReplication
import NIOCore
import Testing

// Pair and group ids become directory names on the retention volume (docs/PROTOCOL.md §4): an
// OPEN_PAIR whose ids do not match the grammar is answered PAIR_ERROR bad-request before the store
// is asked anything, and the connection stays up for a well-named pair.

@Suite(.timeLimit(.minutes(1)))
struct ServerIdentifierTests {
    static let badIDs = ["../../../canary", "..", ".", "a/b", "", "-x", ".hidden", String(repeating: "a", count: 65), "café", "a\nb"]

    @Test(arguments: badIDs)
    func aBadPairIDIsRefusedBeforeTheStoreSeesIt(_ id: String) async throws {
        let store = MemoryStore()
        let pair = store.add("disk-1", size: 64 << 10)
        try await withServer(store) { server in
            let raw = try await server.raw()
            try await raw.authenticate()
            let answer = try await raw.open(1, pairID: id, target: "disk-1", sourceSize: 64 << 10)
            guard case .pairError(1, .badRequest, let message) = answer else {
                Issue.record("expected PAIR_ERROR bad-request for pair id \(id.debugDescription), got \(answer)"); return
            }
            #expect(message.contains("pair id") && message.contains(Identifier.grammar), "\(message)")
            #expect(store.opens.isEmpty)
            #expect(pair.record.opens == 0)
            // The connection is still usable.
            guard case .pairState = try await raw.open(2, pairID: "pair-1", target: "disk-1", sourceSize: 64 << 10) else {
                Issue.record("a well-named pair did not open after the refusal"); return
            }
            #expect(store.opens.map(\.pairID) == ["pair-1"])
        }
    }

    @Test(arguments: ["../g", "..", "", "g/h"])
    func aBadGroupIDIsRefusedBeforeTheStoreSeesIt(_ group: String) async throws {
        let store = MemoryStore()
        store.add("disk-1", size: 64 << 10)
        try await withServer(store) { server in
            let raw = try await server.raw()
            try await raw.authenticate()
            let answer = try await raw.open(1, pairID: "pair-1", group: group, target: "disk-1", sourceSize: 64 << 10)
            guard case .pairError(1, .badRequest, let message) = answer else {
                Issue.record("expected PAIR_ERROR bad-request for group \(group.debugDescription), got \(answer)"); return
            }
            #expect(message.contains("group id"), "\(message)")
            #expect(store.opens.isEmpty)
        }
    }

    /// A pair replicates a source of at least one byte: a size of 0 would make a pair that can never
    /// hold data, and a target rule ("at least as large as the source") that nothing fails.
    @Test func aSourceSizeOfZeroIsRefused() async throws {
        let store = MemoryStore()
        store.add("disk-1", size: 64 << 10)
        try await withServer(store) { server in
            let raw = try await server.raw()
            try await raw.authenticate()
            let answer = try await raw.open(1, pairID: "pair-1", target: "disk-1", sourceSize: 0)
            guard case .pairError(1, .badRequest, let message) = answer else {
                Issue.record("expected PAIR_ERROR bad-request for a source of 0 bytes, got \(answer)"); return
            }
            #expect(message.contains("source size"), "\(message)")
            #expect(store.opens.isEmpty)
        }
    }
}
