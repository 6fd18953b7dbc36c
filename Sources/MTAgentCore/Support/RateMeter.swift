/// Bytes per second over the last `window` whole seconds, counted in one-second buckets: what
/// `mt-agent status` shows as a pair's throughput. Times are whole seconds of a monotonic clock.
public struct RateMeter: Sendable, Equatable {
    /// `window` complete seconds and the current, partial one.
    private var buckets: [UInt64]
    /// The second the newest bucket counts.
    private var newest: Int64 = 0

    public init(window: Int = 10) {
        precondition(window > 0)
        buckets = Array(repeating: 0, count: window + 1)
    }

    public mutating func add(_ bytes: Int, at second: Int64) {
        advance(to: second)
        buckets[index(second)] += UInt64(bytes)
    }

    /// The average over the `window` complete seconds before `second`.
    public func perSecond(at second: Int64) -> Double {
        var copy = self
        copy.advance(to: second)
        let complete = copy.buckets.reduce(0, +) - copy.buckets[index(second)]
        return Double(complete) / Double(buckets.count - 1)
    }

    private func index(_ second: Int64) -> Int { Int(second.magnitude % UInt64(buckets.count)) }

    /// Empties the buckets of the seconds after the newest one, up to `second`.
    private mutating func advance(to second: Int64) {
        guard second > newest else { return }
        let gap = min(second - newest, Int64(buckets.count))
        for s in (second - gap + 1)...second { buckets[index(s)] = 0 }
        newest = second
    }
}
