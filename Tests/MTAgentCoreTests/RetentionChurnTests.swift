import Testing

@testable import MTAgentCore

@Suite("retention.churn rule", .tags(.small))
struct RetentionChurnTests {
    static let mib: UInt64 = 1 << 20
    static let gib: UInt64 = 1 << 30
    static let journal = "/mnt/retention/mt-agent/journal"

    func facts(
        segments: Int? = 8, recent: Int = 5, bytes: UInt64, free: UInt64?, window: String = "24h", policy: String = "prune-oldest"
    ) -> RetentionChurnFacts {
        RetentionChurnFacts(
            journalDirectory: Self.journal, segments: segments, recentSegments: recent, recentBytes: bytes, window: window,
            spacePolicy: policy, space: free.map { VolumeSpace(totalBytes: 100 * Self.gib, availableBytes: $0, readOnly: false) })
    }

    @Test func noJournalDirectoryOrNoSegmentIsASkip() {
        let none = RetentionChurn.evaluate(facts(segments: nil, recent: 0, bytes: 0, free: 50 * Self.gib))
        #expect(none == CheckResult(
            id: "retention.churn", status: .skip,
            message: "no replication has written a journal yet (no /mnt/retention/mt-agent/journal)"))
        let empty = RetentionChurn.evaluate(facts(segments: 0, recent: 0, bytes: 0, free: 50 * Self.gib))
        #expect(empty.status == .skip)
        #expect(empty.message == "no replication has written a journal yet (no segment in /mnt/retention/mt-agent/journal)")
    }

    @Test func freeSpaceHoldingAnotherWindowPasses() {
        let r = RetentionChurn.evaluate(facts(bytes: 3 * Self.gib + 512 * Self.mib, free: 10 * Self.gib))
        #expect(r.status == .pass)
        #expect(r.fix == nil)
        #expect(r.message == "the journal wrote ≈ 3.5 GiB in the last 24h; 10.0 GiB free holds another 24h at that rate "
            + "(approximate: the 5 of 8 journal segments modified in the last 24h, counted whole)")
    }

    @Test func exactlyOneWindowOfFreeSpaceStillPasses() {
        let r = RetentionChurn.evaluate(facts(bytes: 2 * Self.gib, free: 2 * Self.gib))
        #expect(r.status == .pass)
    }

    @Test func segmentsButNothingRecentPasses() {
        let r = RetentionChurn.evaluate(facts(segments: 3, recent: 0, bytes: 0, free: 1536 * Self.mib))
        #expect(r == CheckResult(
            id: "retention.churn", status: .pass,
            message: "no journal segment was modified in the last 24h (3 older); 1.5 GiB free"))
    }

    @Test func churnAboveTheFreeSpaceWarnsWithThePolicyAndAFix() {
        let r = RetentionChurn.evaluate(facts(bytes: 5 * Self.gib, free: 2 * Self.gib, window: "12h", policy: "stop"))
        #expect(r.status == .warn)
        #expect(r.message == "at the last 12h's rate of ≈ 5.0 GiB the journal outgrows the free 2.0 GiB; "
            + "the space policy stop will apply (approximate: the 5 of 8 journal segments modified in the last 12h, counted whole)")
        #expect(r.fix == "grow the retention volume by at least 3.0 GiB, or shorten retention_window (now 12h) in /etc/mt-agent/mt-agent.conf")
    }

    @Test func mebibyteChurnAndBareSecondsWindow() {
        let r = RetentionChurn.evaluate(facts(segments: 1, recent: 1, bytes: 1400 * Self.mib, free: 1200 * Self.mib, window: "3600"))
        #expect(r.status == .warn)
        #expect(r.message == "at the last 3600s's rate of ≈ 1.4 GiB the journal outgrows the free 1.2 GiB; "
            + "the space policy prune-oldest will apply (approximate: the 1 of 1 journal segment modified in the last 3600s, counted whole)")
        #expect(r.fix?.hasPrefix("grow the retention volume by at least 200 MiB,") == true)
    }

    /// Below the reserve retention.free-space fails already: not reported a second time.
    @Test func freeBelowTheReserveIsLeftToFreeSpace() {
        let r = RetentionChurn.evaluate(facts(bytes: 5 * Self.gib, free: 1023 * Self.mib))
        #expect(r.status == .skip)
        #expect(r.message.hasPrefix("not judged: 1023 MiB free is below the 1.0 GiB reserve (see retention.free-space); "
            + "the journal wrote ≈ 5.0 GiB in the last 24h"))
        var withPairs = facts(bytes: 1, free: 1100 * Self.mib)
        withPairs.pairs = 1  // 256 MiB × 5
        #expect(RetentionChurn.evaluate(withPairs).status == .skip)
        withPairs.pairs = 0
        #expect(RetentionChurn.evaluate(withPairs).status == .pass)
    }

    @Test func unknownFreeSpaceIsASkip() {
        let r = RetentionChurn.evaluate(facts(bytes: Self.gib, free: nil))
        #expect(r.status == .skip)
        #expect(r.message.contains("free space of the retention volume is unknown"))
    }
}
