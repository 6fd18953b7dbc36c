import Logging
import MTAgentCore
import NIOPosix

/// Every pair the service has open, by pair id. A pair stays open across reconnects; a second
/// connection opening it takes it over. Opening runs the store's checks on the thread pool, once
/// even when two connections ask at the same moment.
actor PairRegistry {
    private var drivers: [String: Task<PairDriver, Error>] = [:]
    let store: any ReplicaStore
    let pool: NIOThreadPool
    let maxPendingBytes: Int
    let metrics: ServerMetrics
    let logger: Logger

    init(store: any ReplicaStore, pool: NIOThreadPool, maxPendingBytes: Int, metrics: ServerMetrics, logger: Logger) {
        self.store = store; self.pool = pool; self.maxPendingBytes = maxPendingBytes; self.metrics = metrics; self.logger = logger
    }

    /// The pair's driver, attached to `sink`, and the state to report in PAIR_STATE. A driver that
    /// was stopped or closed while it was being attached is replaced by a fresh open.
    func attach(_ open: Frame.OpenPair, sink: PairSink) async throws -> (PairDriver, ReplicaStatus) {
        for _ in 0..<3 {
            let driver = try await driver(for: open)
            switch await driver.attach(sink) {
            case .attached(let status): return (driver, status)
            case .takenOver:
                throw StoreRefusal(.takenOver, "pair \(open.pairID) was opened by another connection while this one opened it")
            case .ended: continue
            }
        }
        throw StoreRefusal(.ioError, "pair \(open.pairID) was closed while it was being opened, three times; open it again later")
    }

    func driver(for open: Frame.OpenPair) async throws -> PairDriver {
        while true {
            guard let existing = drivers[open.pairID] else { return try await openDriver(open, replacing: nil) }
            guard let driver = try? await existing.value else {
                // The earlier open failed: try again.
                if drivers[open.pairID] == existing { drivers[open.pairID] = nil }
                continue
            }
            guard drivers[open.pairID] == existing else { continue }  // replaced while we waited
            guard driver.group == open.groupID, driver.target == open.target else {
                throw StoreRefusal(.pairConflict, "pair \(open.pairID) is open in group \(driver.group) onto \(driver.target), not group \(open.groupID) onto \(open.target)")
            }
            if await driver.isUsable {
                // Every rule again: the target may have been unassigned or mounted since it was opened.
                let store = self.store
                try await pool.runIfActive {
                    try store.admit(pairID: open.pairID, group: open.groupID, target: open.target, sourceSize: open.sourceSize)
                }
                return driver
            }
            guard drivers[open.pairID] == existing else { continue }
            // It failed on an I/O error (a full or failing retention volume, a target that went
            // away for a moment): closed, then opened again, which repairs the journal.
            var pairLogger = logger
            pairLogger[metadataKey: "pair.id"] = "\(open.pairID)"
            pairLogger[metadataKey: "group.id"] = "\(open.groupID)"
            pairLogger.warning("opening again a pair that failed on an I/O error")
            return try await openDriver(open, replacing: driver)
        }
    }

    /// Opens the pair through the store, once even when two connections ask at the same moment;
    /// `replacing` (a failed driver) is closed first, after its last commit.
    private func openDriver(_ open: Frame.OpenPair, replacing old: PairDriver?) async throws -> PairDriver {
        let (store, pool, maxPending, metrics, logger) = (self.store, self.pool, self.maxPendingBytes, self.metrics, self.logger)
        let task = Task {
            if let old { await old.close() }
            let pair = try await pool.runIfActive {
                try store.open(pairID: open.pairID, group: open.groupID, target: open.target, sourceSize: open.sourceSize)
            }
            return PairDriver(pair: pair, pairID: open.pairID, group: open.groupID, target: open.target,
                              sourceSize: open.sourceSize, pool: pool, maxPendingBytes: maxPending, metrics: metrics, logger: logger)
        }
        drivers[open.pairID] = task
        do {
            return try await task.value
        } catch {
            if drivers[open.pairID] == task { drivers[open.pairID] = nil }
            throw error
        }
    }

    /// Makes everything queued durable and closes every pair (shutdown).
    func closeAll() async {
        let all = drivers
        drivers = [:]
        for (_, task) in all {
            if let driver = try? await task.value { await driver.close() }
        }
    }

    /// Stops and forgets every open pair of `group` (failover): each one refuses frames from now
    /// on, its queue is made durable, its connection is told `code`, and the pair is closed after
    /// its last apply. An OPEN_PAIR that arrives later goes through the store again, which refuses it.
    func stop(group: String, code: ErrorCode, message: String) async -> [String] {
        var stopping: [(String, PairDriver)] = []
        for (id, task) in drivers {
            guard let driver = try? await task.value, driver.group == group else { continue }
            // Forgotten before it is stopped: an OPEN_PAIR meanwhile goes to the store.
            if drivers[id] == task { drivers[id] = nil }
            stopping.append((id, driver))
        }
        for (_, driver) in stopping { await driver.stop(code: code, message: message) }
        return stopping.map(\.0).sorted()
    }

    /// Open pairs and their state, for status reporting.
    func snapshot() async -> [(pairID: String, group: String, status: ReplicaStatus)] {
        var out: [(String, String, ReplicaStatus)] = []
        for (_, task) in drivers {
            if let d = try? await task.value { out.append((d.pairID, d.group, await d.status())) }
        }
        return out.sorted { $0.0 < $1.0 }
    }
}
