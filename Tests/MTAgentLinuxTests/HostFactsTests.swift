import Testing

@testable import MTAgentLinux

@Suite("host facts for preflight", .tags(.medium))
struct HostFactsTests {
    static let fibTrie = """
        Main:
          +-- 0.0.0.0/0 3 0 5
             |-- 0.0.0.0
                /0 universe UNICAST
             +-- 127.0.0.0/8 2 0 2
                |-- 127.0.0.1
                   /32 host LOCAL
             +-- 10.20.0.0/24 2 0 2
                |-- 10.20.0.0
                   /24 link UNICAST
                |-- 10.20.0.15
                   /32 host LOCAL
                |-- 10.20.0.255
                   /32 link BROADCAST
        Local:
          +-- 10.20.0.0/24 2 0 2
             |-- 10.20.0.15
                /32 host LOCAL
             |-- 192.168.7.4
                /32 host LOCAL
        """
    static let ifInet6 = """
        00000000000000000000000000000001 01 80 10 80       lo
        fd000000000000000000000000000002 04 40 00 82     eth0
        fe8000000000000000fc00fffe000001 04 40 20 80     eth0
        """

    @Test func addressesFromTheKernelTables() throws {
        let s = try Scratch()
        defer { s.cleanup() }
        let tree = try SysfsTree(root: s.directory)
        try tree.write("/proc/net/fib_trie", Self.fibTrie)
        try tree.write("/proc/net/if_inet6", Self.ifInet6)
        try tree.write("/proc/sys/kernel/hostname", "mt01\n")
        try tree.write("/proc/1/comm", "systemd\n")
        try tree.write("/proc/812/comm", "vmtoolsd\n")
        try tree.write("/proc/self/comm", "vmtoolsd-decoy\n")
        let facts = HostFacts(files: RootedFiles(root: s.directory))
        #expect(facts.addresses == ["10.20.0.15", "192.168.7.4", "fd00::2"])
        #expect(facts.hostname == "mt01")
        #expect(facts.processRunning("vmtoolsd"))
        #expect(!facts.processRunning("chronyd"))
        #expect(facts.clockSynchronized == nil)
    }

    @Test func listeningSocketsAndServiceProcess() throws {
        let s = try Scratch()
        defer { s.cleanup() }
        let tree = try SysfsTree(root: s.directory)
        try tree.write("/proc/net/tcp", """
              sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode
               0: 00000000:24E3 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 1 1
               1: 0100007F:0016 0100007F:A2C4 01 00000000:00000000 00:00000000 00000000     0        0 2 1
            """)
        try tree.write("/proc/77/comm", "mt-agent\n")
        try tree.write("/proc/77/cmdline", bytes: Array("/usr/bin/mt-agent\0serve\0".utf8))
        try tree.write("/proc/78/comm", "mt-agent\n")
        try tree.write("/proc/78/cmdline", bytes: Array("mt-agent\0disks\0".utf8))
        let facts = HostFacts(files: RootedFiles(root: s.directory))
        #expect(facts.listening(onTCPPort: 9443))
        #expect(!facts.listening(onTCPPort: 22))  // established, not listening
        #expect(facts.processRunning("mt-agent", argument: "serve"))
        #expect(!facts.processRunning("mt-agent", argument: "collect"))
    }

    @Test func theLiveClockStateIsReadable() {
        // Whatever this machine's NTP state, the kernel answers adjtimex.
        #expect(HostFacts(files: RootedFiles(root: "/")).clockSynchronized != nil)
    }
}
