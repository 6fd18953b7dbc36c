import Logging
import NIOCore
import Synchronization

/// The service-wide budget of WRITE data received and not yet applied, on top of each pair's own
/// bound (`PairDriver.maxPendingBytes`). A connection takes a lease for a frame's data before it
/// hands the frame to its pair, and waits — reading nothing more, so TCP slows its sender —
/// while the budget is spent; the lease is given back when the data has been applied (or
/// dropped). Waiters are served in arrival order, so no connection starves another. A frame
/// larger than the whole budget is let through alone.
final class PendingBudget: Sendable {
    /// Bytes held by one frame until `release()` or until this object goes, whichever is first.
    final class Lease: Sendable {
        let budget: PendingBudget
        let bytes: Int
        private let released = Atomic(false)
        fileprivate init(budget: PendingBudget, bytes: Int) { self.budget = budget; self.bytes = bytes }

        func release() {
            guard !released.exchange(true, ordering: .acquiringAndReleasing) else { return }
            budget.release(bytes)
        }

        deinit { release() }
    }

    struct State {
        var held = 0
        var peak = 0
        var waiters = CircularBuffer<(bytes: Int, continuation: CheckedContinuation<Void, Never>)>()

        func fits(_ bytes: Int, in limit: Int) -> Bool { held == 0 || held + bytes <= limit }
    }

    let limit: Int
    let metrics: ServerMetrics
    let logger: Logger
    private let state = Mutex(State())
    private let exhaustedLog = RateLimitedLog()

    init(limit: Int, metrics: ServerMetrics, logger: Logger) {
        self.limit = limit
        self.metrics = metrics
        self.logger = logger
    }

    /// Bytes held now, and the most ever held.
    var held: (now: Int, peak: Int) { state.withLock { ($0.held, $0.peak) } }

    func acquire(_ bytes: Int) async -> Lease {
        let granted = state.withLock { s in
            guard s.waiters.isEmpty, s.fits(bytes, in: limit) else { return false }
            take(bytes, &s)
            return true
        }
        if !granted {
            metrics.pendingBudgetWaits.increment()
            exhaustedLog.event { since in
                logger.notice("max_pending_bytes reached: connections stop reading until their data is applied", metadata: [
                    "limit.name": "max_pending_bytes", "limit.value": "\(limit)", "budget.waits": "\(since)",
                ])
            }
            await withCheckedContinuation { (c: CheckedContinuation<Void, Never>) in
                let now = state.withLock { s in
                    if s.waiters.isEmpty, s.fits(bytes, in: limit) {
                        take(bytes, &s)
                        return true
                    }
                    s.waiters.append((bytes, c))
                    return false
                }
                if now { c.resume() }
            }
        }
        return Lease(budget: self, bytes: bytes)
    }

    private func take(_ bytes: Int, _ s: inout State) {
        s.held += bytes
        s.peak = max(s.peak, s.held)
        metrics.pendingBytes.record(Int64(s.held))
    }

    fileprivate func release(_ bytes: Int) {
        let ready: [CheckedContinuation<Void, Never>] = state.withLock { s in
            s.held -= bytes
            var ready: [CheckedContinuation<Void, Never>] = []
            while let first = s.waiters.first, s.fits(first.bytes, in: limit) {
                s.waiters.removeFirst()
                take(first.bytes, &s)
                ready.append(first.continuation)
            }
            metrics.pendingBytes.record(Int64(s.held))
            return ready
        }
        for c in ready { c.resume() }
    }
}
