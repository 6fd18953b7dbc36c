import Foundation
import Glibc
import MTAgentCore
import Testing
@testable import MTAgentJournal

/// The memory of the applier's undo set ("blocks already saved since the last tag") must not grow
/// with the disk. A measurement, not a default test: it writes the target and the undo of it in full
/// (2 × the size on /tmp's disk). Run one size per process and compare the peaks:
///
///     MT_UNDO_BENCH_MIB=1024  swift test --skip-build --filter UndoSetMemoryBench
///     MT_UNDO_BENCH_MIB=16384 swift test --skip-build --filter UndoSetMemoryBench
///
/// or `Scripts/bench undo-set`, which does both and checks the goal (docs/JOURNAL.md "The undo set").
@Suite("Undo set memory (bench)", .enabled(if: ProcessInfo.processInfo.environment["MT_UNDO_BENCH_MIB"] != nil))
struct UndoSetMemoryBench {
    /// Peak resident set of this process, in KiB (VmHWM).
    static func peakKiB() -> Int {
        guard let status = try? String(contentsOfFile: "/proc/self/status", encoding: .utf8),
              let line = status.split(separator: "\n").first(where: { $0.hasPrefix("VmHWM:") }),
              let kib = Int(line.split(separator: " ", omittingEmptySubsequences: true).dropFirst().first ?? "")
        else { return -1 }
        return kib
    }

    /// Resets VmHWM to the current resident set, so the figure is this run's, not test discovery's.
    static func resetPeak() {
        let fd = open("/proc/self/clear_refs", O_WRONLY)
        guard fd >= 0 else { return }
        _ = write(fd, "5", 1)
        close(fd)
    }

    /// A resync of an in-sync pair where every chunk differs: every 1 MiB of a sparse target of
    /// `MT_UNDO_BENCH_MIB` MiB is written once, between two tags, so the undo of every block is
    /// saved and the undo set covers the whole target.
    @Test func resyncOfAnInSyncPairWhereEveryChunkDiffers() throws {
        let mib = Int(ProcessInfo.processInfo.environment["MT_UNDO_BENCH_MIB"] ?? "") ?? 1024
        let size = UInt64(mib) << 20
        let fixture = try Fixture()
        let target = fixture.directory + "/target.img"
        let fd = open(target, O_RDWR | O_CREAT | O_TRUNC, 0o600)
        try #require(fd >= 0 && ftruncate(fd, off_t(size)) == 0)
        close(fd)
        let pair = try fixture.catalog.registerPair(id: "bench", group: "g", target: target, sourceSize: size)
        let applier = try fixture.open(pair)
        defer { applier.close() }
        var seq: UInt64 = 0
        func next() -> UInt64 { seq += 1; return seq }
        // The first resync gives the baseline (no undo is kept before it); then a tag.
        _ = applier.accept(.resyncBegin(seq: next()))
        _ = applier.accept(.resyncDone(seq: next()))
        _ = applier.accept(.tag(seq: next(), tagID: 1, kind: .crash, name: "before", sourceTime: 1))
        _ = try applier.commit()
        try #require(applier.hasBaseline)

        let chunk = 1 << 20
        let data = [UInt8](repeating: 0xA5, count: chunk)
        let batch = 32  // chunks per commit, as the server's group commit gathers them
        Self.resetPeak()
        let start = ContinuousClock.now
        _ = applier.accept(.resyncBegin(seq: next()))
        var offset: UInt64 = 0
        while offset < size {
            for _ in 0..<batch where offset < size {
                #expect(applier.accept(.write(seq: next(), offset: offset, data: data)) == .queued)
                offset += UInt64(chunk)
            }
            _ = applier.accept(.resyncMark(seq: next(), through: offset))
            _ = try applier.commit()
        }
        _ = applier.accept(.resyncDone(seq: next()))
        _ = applier.accept(.tag(seq: next(), tagID: 2, kind: .crash, name: "after", sourceTime: 2))
        let outcome = try applier.commit()
        let seconds = (ContinuousClock.now - start) / .seconds(1)
        let peak = Self.peakKiB()

        #expect(outcome.state == .inSync)
        // The undo of every block was saved: the journal holds at least the target's size.
        var journalBytes: UInt64 = 0
        for segment in try JournalFormat.segments(in: fixture.journal("bench")) {
            var st = stat()
            if stat(JournalFormat.segmentPath(fixture.journal("bench"), segment), &st) == 0 { journalBytes += UInt64(st.st_size) }
        }
        #expect(journalBytes >= size)
        print("undo-set-bench target_mib=\(mib) peak_rss_kib=\(peak) seconds=\(String(format: "%.1f", seconds)) journal_mib=\(journalBytes >> 20)")
    }
}
