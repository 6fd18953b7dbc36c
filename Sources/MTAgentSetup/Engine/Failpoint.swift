import Glibc

/// Named points of a setup run where a test can stop it, to prove that a run killed there and
/// run again ends exactly where an uninterrupted run does. The engine and the file layer call
/// `hit` at each point; production runs have no action.
///
/// Points: `before-apply:<step>`, `after-apply:<step>` (the change is made, the state file does
/// not say so yet), `after-state:<step>`, `backup:<path>` (original saved, nothing changed),
/// `temp:<path>` (new content staged next to the file), `renamed:<path>` (file replaced, its
/// directory not yet fsynced), `before-revert:<step>`, `restored:<path>`.
///
/// `mt-agent failover` run without the service (it then moves the targets itself) hits
/// `failover.saving`, `failover.forward` and `failover.undoing` at progress reports of those
/// rollback phases (docs/JOURNAL.md "Failover").
public struct Failpoint: Sendable {
    private let action: (@Sendable (String) throws -> Void)?

    public init(_ action: @escaping @Sendable (String) throws -> Void) {
        self.action = action
    }

    private init() { action = nil }

    public static let none = Failpoint()

    public func hit(_ point: String) throws {
        try action?(point)
    }

    /// What a failpoint does when reached.
    public enum Action: String, Sendable {
        /// SIGKILL itself: a real kill -9 at a known point.
        case kill
        /// SIGSTOP itself, so that another process can kill it (-9) while it is stopped mid-run.
        case stop
        /// Throw, as a failed system call would.
        case error
    }

    /// `MT_AGENT_FAILPOINT=<point>[=kill|stop|error]` (default kill), the hook the end-to-end
    /// tests use to kill the real binary mid-run. `<point>` is matched exactly.
    public static func parse(_ spec: String?) -> Failpoint {
        guard let spec, !spec.isEmpty else { return .none }
        var point = spec
        var action = Action.kill
        if let eq = spec.lastIndex(of: "="), let a = Action(rawValue: String(spec[spec.index(after: eq)...])) {
            point = String(spec[..<eq])
            action = a
        }
        let target = point
        let chosen = action
        return Failpoint { reached in
            guard reached == target else { return }
            // raise(), not kill(getpid()): the signal goes to this thread, so it stops here. A
            // process-directed signal may let this thread run on (it need not be the one that
            // takes it) — seen once the commands ran on Swift concurrency's threads.
            switch chosen {
            case .kill:
                raise(SIGKILL)
            case .stop:
                raise(SIGSTOP)
            case .error:
                throw SimulatedCrash(point: reached)
            }
        }
    }
}

/// Thrown by a failpoint: the run stops there as if the process had died (the engine writes
/// nothing more).
public struct SimulatedCrash: Error, CustomStringConvertible, Equatable {
    public var point: String
    public init(point: String) { self.point = point }
    public var description: String { "simulated crash at \(point)" }
}
