/// What `preflight`'s `retention.churn` check knows: how much journal the last retention window
/// wrote, and how much the retention volume has left. `Preflight` gathers it under `--root`;
/// `RetentionChurn.evaluate` decides from it alone.
public struct RetentionChurnFacts: Sendable, Equatable {
    /// `<retention>/mt-agent/journal` as a path on the machine, for messages.
    public var journalDirectory: String
    /// Journal segment files (`<pair-id>/seg-NNNNNNNN.mtj`) found, of any age; nil when the
    /// journal directory does not exist.
    public var segments: Int?
    /// Of those, the segments modified within the window, and the sum of their sizes.
    public var recentSegments: Int
    public var recentBytes: UInt64
    /// `retention_window` as the config wrote it ("24h"): the window the segments were counted in.
    public var window: String
    /// `space_policy` of the config: "prune-oldest" or "stop".
    public var spacePolicy: String
    /// statvfs of the retention volume, as `check retention` gathered it; nil when it could not.
    public var space: VolumeSpace?
    /// The pair count `retention.free-space` was judged with, so both use the same reserve.
    public var pairs: Int

    public init(
        journalDirectory: String, segments: Int?, recentSegments: Int = 0, recentBytes: UInt64 = 0,
        window: String = "24h", spacePolicy: String = "prune-oldest",
        space: VolumeSpace?, pairs: Int = 0
    ) {
        self.journalDirectory = journalDirectory
        self.segments = segments
        self.recentSegments = recentSegments
        self.recentBytes = recentBytes
        self.window = window
        self.spacePolicy = spacePolicy
        self.space = space
        self.pairs = pairs
    }
}

/// `retention.churn`: will another retention window fit on the retention volume, at the rate the
/// journal grew in the last one?
///
/// The churn is an approximation: the sizes of the segment files whose mtime falls in the window,
/// each counted whole. A segment begun before the window and appended to within it counts all of
/// its bytes (an overestimate, at most one 256 MiB segment per pair); segments already pruned or
/// removed count nothing (an underestimate).
///
/// It never FAILs: when the free space is below the reserve `retention.free-space` requires, that
/// check already fails and this one SKIPs rather than report the same shortage twice.
public enum RetentionChurn {
    public static let id = "retention.churn"

    public static func evaluate(_ facts: RetentionChurnFacts) -> CheckResult {
        guard let segments = facts.segments, segments > 0 else {
            let why = facts.segments == nil ? "no \(facts.journalDirectory)" : "no segment in \(facts.journalDirectory)"
            return CheckResult(id: id, status: .skip, message: "no replication has written a journal yet (\(why))")
        }
        guard let space = facts.space else {
            return CheckResult(
                id: id, status: .skip, message: "not run: the free space of the retention volume is unknown (see retention.free-space)")
        }
        let churn = facts.recentBytes
        let free = space.availableBytes
        let size = RetentionRules.size
        let window = facts.window.last?.isNumber == true ? facts.window + "s" : facts.window  // bare seconds
        let basis = "approximate: the \(facts.recentSegments) of \(segments) journal segment\(segments == 1 ? "" : "s") "
            + "modified in the last \(window), counted whole"
        let reserve = RetentionRules.requiredFreeBytes(pairs: facts.pairs)
        if free < reserve {
            return CheckResult(
                id: id, status: .skip,
                message: "not judged: \(size(free)) free is below the \(size(reserve)) reserve (see retention.free-space); "
                    + "the journal wrote ≈ \(size(churn)) in the last \(window) (\(basis))")
        }
        if churn == 0 {
            return CheckResult(
                id: id, status: .pass,
                message: "no journal segment was modified in the last \(window) (\(segments) older); \(size(free)) free")
        }
        if free >= churn {
            return CheckResult(
                id: id, status: .pass,
                message: "the journal wrote ≈ \(size(churn)) in the last \(window); \(size(free)) free holds another \(window) "
                    + "at that rate (\(basis))")
        }
        return CheckResult(
            id: id, status: .warn,
            message: "at the last \(window)'s rate of ≈ \(size(churn)) the journal outgrows the free \(size(free)); "
                + "the space policy \(facts.spacePolicy) will apply (\(basis))",
            fix: "grow the retention volume by at least \(size(churn - free)), or shorten retention_window "
                + "(now \(facts.window)) in /etc/mt-agent/mt-agent.conf")
    }
}
