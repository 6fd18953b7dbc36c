import CMTShim
import Glibc
import MTAgentCore

/// Facts about the machine that preflight checks need beyond the disk inventory, read through
/// the system root so a captured tree answers the same questions (where it holds the files).
public struct HostFacts: Sendable {
    public let files: SystemFiles

    public init(files: SystemFiles) { self.files = files }

    /// nil when unset (the kernel says "(none)").
    public var hostname: String? {
        files.text("/proc/sys/kernel/hostname").flatMap { $0 == "(none)" ? nil : $0 }
    }
    public var hosts: String? { files.text("/etc/hosts") }

    /// Every non-loopback, non-link-local address of the machine: IPv4 from the kernel's local
    /// routing table (`/proc/net/fib_trie`), IPv6 from `/proc/net/if_inet6`.
    public var addresses: [String] {
        var result: [String] = []
        if let trie = files.text("/proc/net/fib_trie") {
            result += Self.localIPv4(fibTrie: trie)
        }
        if let inet6 = files.text("/proc/net/if_inet6") {
            result += Self.globalIPv6(ifInet6: inet6)
        }
        var seen = Set<String>()
        return result.filter { seen.insert($0).inserted }
    }

    /// True when a process named `name` runs (`/proc/<pid>/comm`).
    public func processRunning(_ name: String) -> Bool {
        guard let entries = files.list("/proc") else { return false }
        return entries.contains { pid in
            pid.allSatisfy(\.isNumber) && files.text("/proc/\(pid)/comm") == name
        }
    }

    /// True when a process runs `name` with `argument` on its command line (e.g. `mt-agent serve`).
    public func processRunning(_ name: String, argument: String) -> Bool {
        guard let entries = files.list("/proc") else { return false }
        return entries.contains { pid in
            guard pid.allSatisfy(\.isNumber), files.text("/proc/\(pid)/comm") == name,
                let cmdline = files.read("/proc/\(pid)/cmdline")
            else { return false }
            return cmdline.split(separator: 0).contains { String(decoding: $0, as: UTF8.self) == argument }
        }
    }

    /// True when some socket listens on TCP `port` (`/proc/net/tcp` and `tcp6`, state 0A).
    public func listening(onTCPPort port: Int) -> Bool {
        ["/proc/net/tcp", "/proc/net/tcp6"].contains { path in
            guard let table = files.text(path) else { return false }
            return Self.listeningPorts(procNetTCP: table).contains(port)
        }
    }

    static func listeningPorts(procNetTCP: String) -> Set<Int> {
        Set(
            procNetTCP.split(separator: "\n").dropFirst().compactMap { line in
                let fields = line.split(separator: " ", omittingEmptySubsequences: true)
                guard fields.count > 3, fields[3] == "0A", let colon = fields[1].lastIndex(of: ":") else { return nil }
                return Int(fields[1][fields[1].index(after: colon)...], radix: 16)
            })
    }

    /// The kernel's NTP state (adjtimex): nil under a `--root` tree, which has no clock.
    public var clockSynchronized: Bool? {
        guard files.root == "/" else { return nil }
        let state = mt_clock_synchronized()
        return state < 0 ? nil : state == 1
    }

    /// `/32 host LOCAL` leaves of the local table, minus 127.0.0.0/8.
    static func localIPv4(fibTrie: String) -> [String] {
        var addresses: [String] = []
        var last: String?
        for line in fibTrie.split(separator: "\n") {
            let trimmed = String(line).trimmingWhitespace()
            if trimmed.hasPrefix("|-- ") {
                last = String(trimmed.dropFirst(4))
            } else if trimmed == "/32 host LOCAL", let address = last, !address.hasPrefix("127.") {
                addresses.append(address)
            }
        }
        return addresses
    }

    /// Global-scope addresses (scope 00) in `/proc/net/if_inet6`, written with `:` every 4 digits.
    static func globalIPv6(ifInet6: String) -> [String] {
        ifInet6.split(separator: "\n").compactMap { line in
            let fields = line.split(separator: " ", omittingEmptySubsequences: true)
            guard fields.count >= 6, fields[3] == "00", fields[0].count == 32 else { return nil }
            let hex = Array(fields[0])
            var bytes = stride(from: 0, to: 32, by: 2).compactMap { UInt8(String(hex[$0..<$0 + 2]), radix: 16) }
            guard bytes.count == 16 else { return nil }
            var text = [CChar](repeating: 0, count: Int(INET6_ADDRSTRLEN))
            guard inet_ntop(AF_INET6, &bytes, &text, socklen_t(text.count)) != nil else { return nil }
            return String(cString: text)
        }
    }
}
