/// The scrypt parameters a master target may use for the replication key (docs/PROTOCOL.md §3.2),
/// and so the most a sender derives with. They arrive in CHALLENGE before the peer has proved
/// anything, and scrypt needs 128 × n × r bytes for as long as it runs, p times over: a sender
/// checks them before it derives. `mt-agent setup` writes n = 2^17, r = 8, p = 1 (128 MiB).
public enum ScryptBounds {
    /// n: a power of two in this range.
    public static let n: ClosedRange<UInt64> = (1 << 10)...(1 << 22)
    public static let r: ClosedRange<UInt64> = 1...32
    public static let p: ClosedRange<UInt64> = 1...16
    /// 128 × n × r, the memory one derivation holds.
    public static let maxMemory: UInt64 = 1 << 30

    /// Why these parameters are outside the bounds, or nil when they are inside. Never traps,
    /// whatever the values.
    public static func problem(n: UInt64, r: UInt64, p: UInt64) -> String? {
        guard Self.n.contains(n), n & (n - 1) == 0 else { return "n = \(n) is not a power of two from 2^10 to 2^22" }
        guard Self.r.contains(r) else { return "r = \(r) is outside 1…32" }
        guard Self.p.contains(p) else { return "p = \(p) is outside 1…16" }
        // n ≤ 2^22 and r ≤ 32: the product cannot overflow.
        guard 128 * n * r <= maxMemory else { return "n × r needs more than 1 GiB of memory" }
        return nil
    }
}
