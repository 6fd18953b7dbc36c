import Glibc
import MTAgentCore

/// Where things live on the retention volume (docs/JOURNAL.md "Layout"). Everything mt-agent keeps
/// there is under `<retention>/mt-agent`; a pair's directories are named by its validated id only
/// (`Identifier`), and every directory made or deleted under a pair's name is reached from the
/// `mt-agent` directory one component at a time without following links (`RetentionDirectory`), so
/// neither a hostile id nor a forged catalog row nor a planted symlink can lead outside it.
public struct RetentionLayout: Sendable {
    public var retention: String
    public init(retention: String) { self.retention = retention }
    public var base: String { retention + "/mt-agent" }
    public var catalog: String { base + "/catalog.sqlite" }
    public var journalRoot: String { base + "/" + Self.journalName.value }
    /// Held by the process working on this volume: `serve`, or a recovery command when it is not running.
    public var lock: String { base + "/serve.lock" }
    /// The service's local control socket (root only, mode 0600).
    public var controlSocket: String { base + "/control.sock" }

    static let journalName: Identifier = "journal"
    static let failoverName: Identifier = "failover"

    /// A pair's undo journal directory (a path to read; `makeJournal` to create it safely).
    public func journal(_ pair: Identifier) -> String { journalRoot + "/" + pair.value }
    /// The saved head content of a failed-over pair's target (docs/JOURNAL.md "Failover").
    public func saved(_ pair: Identifier) -> String { base + "/" + Self.failoverName.value + "/" + pair.value }

    /// Creates (when missing) and checks the pair's journal directory; returns its path.
    @discardableResult
    public func makeJournal(_ pair: Identifier) throws -> String {
        try openBase(create: true).make([Self.journalName, pair]).path
    }

    /// Creates (when missing) and checks the pair's saved-store directory; returns its path.
    @discardableResult
    public func makeSaved(_ pair: Identifier) throws -> String {
        try openBase(create: true).make([Self.failoverName, pair]).path
    }

    /// Deletes the pair's journal directory and all in it; returns the bytes freed.
    public func removeJournal(_ pair: Identifier) throws -> UInt64 { try remove(in: Self.journalName, pair) }

    /// Deletes the pair's saved store; returns the bytes freed.
    public func removeSaved(_ pair: Identifier) throws -> UInt64 { try remove(in: Self.failoverName, pair) }

    /// The pair's journal directory opened safely; nil when it does not exist.
    public func openJournal(_ pair: Identifier) throws -> RetentionDirectory? {
        guard let base = try openBaseIfPresent() else { return nil }
        return try base.descend([Self.journalName, pair], create: false)
    }

    private func remove(in parent: Identifier, _ pair: Identifier) throws -> UInt64 {
        guard let base = try openBaseIfPresent(), let directory = try base.child(parent, create: false) else { return 0 }
        return try directory.remove(pair)
    }

    func openBase(create: Bool) throws -> RetentionDirectory {
        try RetentionDirectory.open(base, create: create)
    }

    private func openBaseIfPresent() throws -> RetentionDirectory? {
        do {
            return try RetentionDirectory.open(base, create: false)
        } catch RetentionPathError.io(_, _, ENOENT) {
            return nil
        }
    }
}
