import Foundation
import Logging
import Metrics
import MTAgentCore
import MTAgentJournal
import MTAgentLinux
import MTAgentReplication
import NIOConcurrencyHelpers

/// The server's `ReplicaStore` on this machine: a pair opens only onto a target the admin
/// assigned to its group and that passes every target rule (DESIGN §4), resolved from its stable
/// identity at the moment of opening; its writes go through the journal's applier.
public final class JournalStore: ReplicaStore {
    let catalog: Catalog
    let journalRoot: String
    let retentionPath: String
    let inspector: TargetInspector
    let logger: Logger
    /// Closed while the retention volume is full under space_policy stop.
    let gate: SpaceGate
    /// Config `undo_set_max_ranges`, given to every applier this store opens.
    let undoSetMaxRanges: Int
    /// Journal segment size (256 MiB); `MT_AGENT_JOURNAL_SEGMENT_BYTES` lowers it for tests, so
    /// pruning has whole segments to free in a small journal.
    let segmentLimit: UInt64 = ProcessInfo.processInfo.environment["MT_AGENT_JOURNAL_SEGMENT_BYTES"].flatMap { UInt64($0) }
        .map { max($0, 64 << 10) } ?? 256 << 20

    /// The lab setting `allow_file_targets`: regular files may be targets (off in production).
    let allowFileTargets: Bool

    public init(catalog: Catalog, retentionPath: String, inspector: TargetInspector, logger: Logger, gate: SpaceGate = SpaceGate(),
                allowFileTargets: Bool = false, undoSetMaxRanges: Int = UndoSet.defaultMaxRanges) {
        self.gate = gate
        self.allowFileTargets = allowFileTargets
        self.undoSetMaxRanges = undoSetMaxRanges
        self.catalog = catalog
        self.retentionPath = retentionPath
        self.journalRoot = RetentionLayout(retention: retentionPath).journalRoot
        self.inspector = inspector
        self.logger = logger
    }

    public static func catalogPath(retention: String) -> String { RetentionLayout(retention: retention).catalog }

    /// The facts `TargetRules` judges for `identity` (also `mt-agent check target`).
    public func facts(identity: String, pairID: String?, group: String?, sourceSize: UInt64?) throws -> (TargetFacts, admitted: AdmittedTarget?) {
        let assigned = try catalog.assignments().first { $0.target == identity }?.group
        let found = try inspector.inspect(identity: identity, retentionPath: retentionPath)
        let other = try catalog.pairs().first { $0.target == identity && $0.id != pairID }?.id
        var facts = TargetFacts(identity: identity, device: found.device, assignedGroup: assigned, requestedGroup: group,
                                retentionDisks: found.retentionDisks, retentionPath: found.retentionPath ?? retentionPath,
                                otherPair: other, sourceSize: sourceSize)
        facts.allowFileTargets = allowFileTargets
        facts.fileOnRetentionFilesystem = found.fileOnRetentionFilesystem
        return (facts, found.admitted)
    }

    public func admit(pairID: String, group: String, target: String, sourceSize: UInt64) throws {
        try refuseIfFailedOver(group: group)
        _ = try admittedTarget(pairID: pairID, group: group, target: target, sourceSize: sourceSize)
    }

    /// After `mt-agent failover` the targets belong to the operator until commit: nothing of the group
    /// is opened, so no replicated write can land on a rolled-back disk.
    func refuseIfFailedOver(group: String) throws {
        if let reason = gate.reason { throw StoreRefusal(.retentionFull, reason) }
        guard let state = try catalog.failover(group: group) else { return }
        throw StoreRefusal(.failedOver, "group \(group) was failed over to recovery point \(state.pointID) (\(state.status.rawValue)); "
            + "the master target accepts nothing for it until 'mt-agent commit --group \(group)', after which its targets are released")
    }

    /// The device or file the target resolves to now, once every target rule passes, and the node it is.
    func admittedTarget(pairID: String, group: String, target: String, sourceSize: UInt64) throws -> AdmittedTarget {
        let (facts, admitted) = try facts(identity: target, pairID: pairID, group: group, sourceSize: sourceSize)
        if let refusal = TargetRules.refusals(facts).first {
            if refusal.id == "target.kind" {
                logger.warning("file target refused: allow_file_targets is off", metadata: ["target": "\(target)", "pair.id": "\(pairID)"])
            }
            throw StoreRefusal(.targetRefused, "\(refusal.id): \(refusal.message)" + (refusal.fix.map { " — \($0)" } ?? ""))
        }
        guard let admitted else { throw StoreRefusal(.targetRefused, "target.identity: \(target) cannot be resolved") }
        return admitted
    }

    public func open(pairID: String, group: String, target: String, sourceSize: UInt64) throws -> any ReplicaPair {
        try refuseIfFailedOver(group: group)
        let admitted = try admittedTarget(pairID: pairID, group: group, target: target, sourceSize: sourceSize)
        let path = admitted.path
        let info: PairInfo
        do {
            info = try catalog.registerPair(id: pairID, group: group, target: target, sourceSize: sourceSize)
        } catch let error as CatalogError {
            throw StoreRefusal(.pairConflict, "\(error)")
        }
        var pairLogger = logger
        pairLogger[metadataKey: "pair.id"] = "\(pairID)"
        pairLogger[metadataKey: "group.id"] = "\(group)"
        do {
            let applier = try PairApplier.open(pair: info, targetPath: path, admitted: admitted.node, journalRoot: journalRoot, catalog: catalog,
                                               logger: pairLogger, segmentLimit: segmentLimit)
            applier.undoSetMaxRanges = undoSetMaxRanges
            return JournalPair(applier: applier, metrics: AppliedMetrics(pairID: pairID, group: group))
        } catch {
            throw StoreRefusal(.ioError, "cannot open pair \(pairID) on \(path): \(error)")
        }
    }
}

extension JournalStore {
    /// Points, failover and commit over this store's catalog; targets resolved and judged like an OPEN_PAIR's.
    public func recovery(logger: Logger) -> Recovery {
        Recovery(catalog: catalog, layout: RetentionLayout(retention: retentionPath), logger: logger) { [self] pair in
            try admittedTarget(pairID: pair.id, group: pair.group, target: pair.target, sourceSize: pair.sourceSize)
        }
    }
}

/// A pair's writes made durable on its target (docs/metrics.md), created once per open pair.
struct AppliedMetrics: Sendable {
    let bytes: Counter
    let writes: Counter
    /// Times the pair's undo set outgrew `undo_set_max_ranges` and was emptied.
    let undoSetDrops: Counter

    init(pairID: String, group: String, factory: any MetricsFactory = MetricsSystem.factory) {
        let labels = [("pair", pairID), ("group", group)]
        bytes = Counter(label: "mt_agent_applied_bytes_total", dimensions: labels, factory: factory)
        writes = Counter(label: "mt_agent_applied_writes_total", dimensions: labels, factory: factory)
        undoSetDrops = Counter(label: "mt_agent_undo_set_drops_total", dimensions: labels, factory: factory)
    }
}

/// One pair over its applier. The server calls `apply`, `requireResync`, `chunkHashes` one at a
/// time (on the thread pool); `status` may be read from anywhere, so it is kept in a lock.
final class JournalPair: ReplicaPair {
    let applier: PairApplier
    let metrics: AppliedMetrics
    private let current: NIOLockedValueBox<ReplicaStatus>

    init(applier: PairApplier, metrics: AppliedMetrics) {
        self.applier = applier
        self.metrics = metrics
        current = NIOLockedValueBox(Self.status(of: applier))
    }

    static func status(of a: PairApplier) -> ReplicaStatus {
        ReplicaStatus(state: a.state, durableSeq: a.durableSeq, resyncOffset: a.resyncOffset, targetSize: a.targetSize, reason: a.reason)
    }

    var status: ReplicaStatus { current.withLockedValue { $0 } }

    func apply(_ ops: [PairOp]) throws -> ApplyResult {
        // The first refusal is reported; the driver sends one PAIR_ERROR per resync episode.
        var refusal: PairRefusal?
        // The writes queued (not duplicates, not refused): applied once their seq is durable.
        var queued: [(seq: UInt64, bytes: Int)] = []
        for op in ops {
            switch applier.accept(op) {
            case .refused(let why) where refusal == nil:
                refusal = why
            case .queued:
                switch op {
                case .resyncBegin: refusal = nil
                case .write(let seq, _, let data): queued.append((seq, data.count))
                default: break
                }
            default:
                break
            }
        }
        let dropsBefore = applier.undoSetDrops
        defer {
            if applier.undoSetDrops > dropsBefore { metrics.undoSetDrops.increment(by: applier.undoSetDrops - dropsBefore) }
            // Also after a failed commit: the batches before the failure are on the target.
            var bytes = 0
            var writes = 0
            for w in queued where w.seq <= applier.durableSeq {
                bytes += w.bytes
                writes += 1
            }
            if writes > 0 {
                metrics.writes.increment(by: writes)
                metrics.bytes.increment(by: bytes)
            }
        }
        let outcome = try applier.commit()
        current.withLockedValue { $0 = Self.status(of: applier) }
        return ApplyResult(durableSeq: outcome.durableSeq, refusal: refusal)
    }

    func requireResync(reason: String) throws {
        try applier.markResyncRequired(reason: reason)
        current.withLockedValue { $0 = Self.status(of: applier) }
    }

    func chunkHashes(offset: UInt64, chunkSize: Int, count: Int) throws -> [UInt8] {
        // Read in large pieces of whole chunks and hash the chunks inside: one pread per 4 KiB
        // chunk would dominate a differential resync.
        // `count` comes from the wire (up to 2^32): only the chunks inside the target are hashed.
        let left = offset < applier.targetSize ? (applier.targetSize - offset + UInt64(chunkSize) - 1) / UInt64(chunkSize) : 0
        let count = Int(min(UInt64(count), left))
        var out: [UInt8] = []
        out.reserveCapacity(count * 32)
        try applier.readTarget(offset: offset, count: count * chunkSize, granule: chunkSize) { piece in
            out += ChunkHashes.of(piece, chunkSize: chunkSize)
        }
        return out
    }

    func close() { applier.close() }
}
