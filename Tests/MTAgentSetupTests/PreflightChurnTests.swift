import Glibc
import Logging
import MTAgentCore
import MTAgentLinux
import Testing

@testable import MTAgentSetup

/// A retention volume with the free space a test says; stat and the directory are the real ones
/// under the root.
struct DescribedVolume: VolumeProbing {
    var availableBytes: UInt64
    func kind(of hostPath: String) -> PathKind { LiveVolumes().kind(of: hostPath) }
    func space(of hostPath: String) throws -> VolumeSpace {
        VolumeSpace(totalBytes: 20 << 30, availableBytes: availableBytes, readOnly: false)
    }
    func writeProbe(in hostDirectory: String, timeout: Duration) -> WriteProbeOutcome { .succeeded(.milliseconds(1)) }
}

@Suite("preflight retention.churn on a fixture machine", .tags(.medium))
struct PreflightChurnTests {
    static let mib = 1 << 20
    static let journal = "/mnt/retention/mt-agent/journal"

    /// A segment of `size` bytes (sparse past the first byte) last modified `age` seconds ago.
    func segment(_ s: SetupScratchRoot, _ path: String, size: Int, age: Int) throws {
        let host = s.host(Self.journal + "/" + path)
        try HostFile.makeDirectories(HostFile.dirname(host))
        try HostFile.write(host, [0x4D], mode: 0o600)
        guard truncate(host, off_t(size)) == 0 else { throw SetupTestError("truncate \(host): errno \(errno)") }
        let when = timespec(tv_sec: time(nil) - age, tv_nsec: 0)
        let times = [when, when]
        guard utimensat(AT_FDCWD, host, times, 0) == 0 else { throw SetupTestError("utimensat \(host): errno \(errno)") }
    }

    func churn(_ root: String, free: UInt64) throws -> CheckResult {
        let report = try Preflight(root: root, logger: quietLogger, volumes: DescribedVolume(availableBytes: free)).run()
        let ids = report.checks.map(\.id)
        let churnAt = try #require(ids.firstIndex(of: "retention.churn"))
        #expect(ids[churnAt - 1] == "retention.write-probe", "retention.churn follows the retention.* checks: \(ids)")
        #expect(report.checks.first { $0.id == "retention.free-space" }?.status == .pass)
        return report.checks[churnAt]
    }

    @Test func onlySegmentsWrittenWithinTheConfiguredWindowCount() throws {
        let s = try SetupScratchRoot("debian12")
        defer { s.cleanup() }
        try s.put(AgentPaths.config, "retention_window = 6h\nspace_policy = stop\n")
        try HostFile.makeDirectories(s.host("/mnt/retention"))
        #expect(try churn(s.root, free: 3 << 30).message
            == "no replication has written a journal yet (no /mnt/retention/mt-agent/journal)")

        try segment(s, "db-disk0/seg-00000001.mtj", size: 5 * Self.mib, age: 2 * 86400)  // old
        try segment(s, "db-disk0/seg-00000002.mtj", size: 2 * Self.mib, age: 3600)
        try segment(s, "web-disk0/seg-00000001.mtj", size: 4 * Self.mib, age: 7 * 3600)  // within 24h, not 6h
        try segment(s, "web-disk0/seg-00000002.mtj", size: 1 * Self.mib, age: 60)
        try segment(s, "web-disk0/seg-00000003.mtj.tmp", size: 64 * Self.mib, age: 0)  // not a segment

        let pass = try churn(s.root, free: 3 << 30)
        #expect(pass.status == .pass)
        #expect(pass.message == "the journal wrote ≈ 3 MiB in the last 6h; 3.0 GiB free holds another 6h at that rate "
            + "(approximate: the 2 of 4 journal segments modified in the last 6h, counted whole)")

        try segment(s, "web-disk0/seg-00000002.mtj", size: 4 << 30, age: 60)  // sparse: 4 GiB by its size
        let warn = try churn(s.root, free: 3 << 30)
        #expect(warn.status == .warn)
        #expect(warn.message == "at the last 6h's rate of ≈ 4.0 GiB the journal outgrows the free 3.0 GiB; "
            + "the space policy stop will apply (approximate: the 2 of 4 journal segments modified in the last 6h, counted whole)")
        #expect(warn.fix == "grow the retention volume by at least 1.0 GiB, or shorten retention_window (now 6h) in /etc/mt-agent/mt-agent.conf")
    }

    @Test func segmentNames() {
        #expect(Preflight.isSegmentName("seg-00000001.mtj"))
        #expect(Preflight.isSegmentName("seg-123456789.mtj"))
        #expect(!Preflight.isSegmentName("seg-1.mtj"))
        #expect(!Preflight.isSegmentName("seg-0000000a.mtj"))
        #expect(!Preflight.isSegmentName("seg-00000001.mtj.tmp"))
        #expect(!Preflight.isSegmentName("catalog.sqlite"))
    }
}
