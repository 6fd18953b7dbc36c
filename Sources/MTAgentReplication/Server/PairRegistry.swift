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

    func driver(for open: Frame.OpenPair) async throws -> PairDriver {
        if let existing = drivers[open.pairID] {
            if let driver = try? await existing.value {
                guard driver.group == open.groupID, driver.target == open.target else {
                    throw StoreRefusal(.pairConflict, "pair \(open.pairID) is open in group \(driver.group) onto \(driver.target), not group \(open.groupID) onto \(open.target)")
                }
                // Every rule again: the target may have been unassigned or mounted since it was opened.
                let store = self.store
                try await pool.runIfActive {
                    try store.admit(pairID: open.pairID, group: open.groupID, target: open.target, sourceSize: open.sourceSize)
                }
                return driver
            }
            drivers[open.pairID] = nil  // the earlier open failed: try again
        }
        let (store, pool, maxPending, metrics, logger) = (self.store, self.pool, self.maxPendingBytes, self.metrics, self.logger)
        let task = Task {
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
            drivers[open.pairID] = nil
            throw error
        }
    }

    /// Makes everything queued durable and closes every pair (shutdown).
    func closeAll() async {
        for (_, task) in drivers {
            if let driver = try? await task.value { await driver.close() }
        }
        drivers = [:]
    }

    /// Stops and forgets every open pair of `group` (failover): each one's queue is made durable,
    /// its connection is told `code`, and the pair is closed. An OPEN_PAIR that arrives later goes
    /// through the store again, which refuses it.
    func stop(group: String, code: ErrorCode, message: String) async -> [String] {
        var stopped: [String] = []
        for (id, task) in drivers {
            guard let driver = try? await task.value, driver.group == group else { continue }
            await driver.stop(code: code, message: message)
            drivers[id] = nil
            stopped.append(id)
        }
        return stopped.sorted()
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
