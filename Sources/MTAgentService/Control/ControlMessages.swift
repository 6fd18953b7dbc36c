import MTAgentCore

/// One request on the control socket: a JSON object on one line (docs/control-socket.md).
public struct ControlRequest: Sendable, Codable, Equatable {
    public enum Command: String, Sendable, Codable { case points, failover, commit, status }
    public var command: Command
    @Nullable public var group: String? = nil
    /// `failover`: the point selector as typed (`latest`, `latest-app`, an id or a time).
    @Nullable public var point: String? = nil
    public var force: Bool = false

    public init(command: Command, group: String? = nil, point: String? = nil, force: Bool = false) {
        self.command = command; self.group = group; self.point = point; self.force = force
    }
}

/// One answer line: progress lines, then exactly one line with a result or an error.
public struct ControlEvent: Sendable, Codable, Equatable {
    @Nullable public var progress: FailoverProgress? = nil
    @Nullable public var points: [GroupPoints]? = nil
    @Nullable public var failover: FailoverReport? = nil
    @Nullable public var commit: CommitReport? = nil
    @Nullable public var status: ServiceStatus? = nil
    @Nullable public var error: String? = nil

    public init(progress: FailoverProgress? = nil, points: [GroupPoints]? = nil, failover: FailoverReport? = nil,
                commit: CommitReport? = nil, status: ServiceStatus? = nil, error: String? = nil) {
        self.progress = progress; self.points = points; self.failover = failover; self.commit = commit
        self.status = status; self.error = error
    }

    public var isFinal: Bool { progress == nil }
}
