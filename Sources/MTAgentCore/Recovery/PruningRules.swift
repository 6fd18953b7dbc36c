/// Which recovery points pruning removes (DESIGN §7): those older than the retention window, and
/// when the retention volume runs short of its reserve under the `prune-oldest` policy, the oldest
/// ones first. A group's newest point is never removed: a group always keeps a point to fail over
/// to, even when its sender has been away longer than the window.
public enum PruningRules {
    public struct Point: Sendable, Equatable {
        public var group: String
        public var tagID: UInt64
        /// Unix nanoseconds on the source.
        public var sourceTime: UInt64
        public init(group: String, tagID: UInt64, sourceTime: UInt64) {
            self.group = group; self.tagID = tagID; self.sourceTime = sourceTime
        }
    }

    /// Per group, the tag id through which every point is older than `window` (and not the
    /// group's newest); groups with nothing to prune are absent.
    public static func expired(_ points: [Point], now: UInt64, windowNs: UInt64) -> [String: UInt64] {
        let cutoff = now > windowNs ? now - windowNs : 0
        var result: [String: UInt64] = [:]
        for (group, members) in Dictionary(grouping: points, by: \.group) {
            let sorted = members.sorted { $0.tagID < $1.tagID }
            if let last = sorted.dropLast().last(where: { $0.sourceTime < cutoff }) { result[group] = last.tagID }
        }
        return result
    }

    /// The oldest point of all groups that may go to free space (the newest of each group stays),
    /// or nil when only newest points are left.
    public static func oldestRemovable(_ points: [Point]) -> Point? {
        var newest: [String: UInt64] = [:]
        for p in points { newest[p.group] = max(newest[p.group] ?? 0, p.tagID) }
        return points.filter { newest[$0.group] != $0.tagID }.min { ($0.sourceTime, $0.tagID) < ($1.sourceTime, $1.tagID) }
    }
}
