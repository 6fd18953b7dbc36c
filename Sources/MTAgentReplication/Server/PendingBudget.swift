import Logging
import NIOCore
import Synchronization

/// The service-wide budget of WRITE data received and not yet applied, on top of each pair's own
/// bound (`PairDriver.maxPendingBytes`). `PendingBudgetHandler` takes a lease for each WRITE as it
/// is decoded, before the frame is queued for its connection; while the budget is spent the
/// connection holds that frame and reads nothing more, so TCP slows its sender. The lease is given
/// back once the data is applied (or dropped). Waiters are served in arrival order, so no
/// connection starves another. A frame larger than the whole budget is let through alone.
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

    typealias Grant = @Sendable (Lease) -> Void

    struct State {
        var held = 0
        var peak = 0
        var waiters = CircularBuffer<(bytes: Int, grant: Grant)>()

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

    /// A lease now, or nil (nothing taken) when the budget is spent or others are waiting.
    func tryAcquire(_ bytes: Int) -> Lease? {
        let granted = state.withLock { s in
            guard s.waiters.isEmpty, s.fits(bytes, in: limit) else { return false }
            take(bytes, &s)
            return true
        }
        return granted ? Lease(budget: self, bytes: bytes) : nil
    }

    /// Calls `grant` with a lease once there is room, after every earlier waiter: at once (on
    /// this thread) when there is room now, else on the thread that gives bytes back.
    func acquire(_ bytes: Int, grant: @escaping Grant) {
        let now = state.withLock { s in
            if s.waiters.isEmpty, s.fits(bytes, in: limit) {
                take(bytes, &s)
                return true
            }
            s.waiters.append((bytes, grant))
            return false
        }
        if now {
            grant(Lease(budget: self, bytes: bytes))
            return
        }
        metrics.pendingBudgetWaits.increment()
        exhaustedLog.event { since in
            logger.notice("max_pending_bytes reached: connections stop reading until their data is applied", metadata: [
                "limit.name": "max_pending_bytes", "limit.value": "\(limit)", "budget.waits": "\(since)",
            ])
        }
    }

    private func take(_ bytes: Int, _ s: inout State) {
        s.held += bytes
        s.peak = max(s.peak, s.held)
        metrics.pendingBytes.record(Int64(s.held))
    }

    fileprivate func release(_ bytes: Int) {
        let ready: [(Int, Grant)] = state.withLock { s in
            s.held -= bytes
            var ready: [(Int, Grant)] = []
            while let first = s.waiters.first, s.fits(first.bytes, in: limit) {
                s.waiters.removeFirst()
                take(first.bytes, &s)
                ready.append((first.bytes, first.grant))
            }
            metrics.pendingBytes.record(Int64(s.held))
            return ready
        }
        for (bytes, grant) in ready { grant(Lease(budget: self, bytes: bytes)) }
    }
}

/// A frame as the connection receives it: a WRITE comes with its share of the `PendingBudget`.
struct ReceivedFrame: Sendable {
    var frame: Frame
    var lease: PendingBudget.Lease?
}

/// Sits after the frame decoder: takes each WRITE's lease from the `PendingBudget` before the
/// frame is queued for the connection. When the budget is spent it holds that frame (and any
/// decoded after it, in order) and passes no `read()` on, so nothing more is read from the socket
/// until the budget has room; the end of the stream and errors wait behind the held frames.
final class PendingBudgetHandler: ChannelDuplexHandler, RemovableChannelHandler {
    typealias InboundIn = Frame
    typealias InboundOut = ReceivedFrame
    typealias OutboundIn = Frame
    typealias OutboundOut = Frame

    let budget: PendingBudget
    private var held = CircularBuffer<Frame>()
    private var waiting = false
    private var readPending = false
    private var deferredError: (any Error)?
    private var deferredInactive = false
    private var removed = false

    init(budget: PendingBudget) { self.budget = budget }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        held.append(unwrapInboundIn(data))
        if !waiting { deliver(context: context) }
    }

    /// Passes held frames on in order until one needs a lease the budget cannot give now.
    private func deliver(context: ChannelHandlerContext) {
        while let frame = held.first {
            var lease: PendingBudget.Lease?
            if case .write(let w) = frame {
                lease = budget.tryAcquire(w.data.readableBytes)
                if lease == nil {
                    wait(for: w.data.readableBytes, context: context)
                    return
                }
            }
            held.removeFirst()
            context.fireChannelRead(wrapInboundOut(ReceivedFrame(frame: frame, lease: lease)))
        }
        if let error = deferredError {
            deferredError = nil
            context.fireErrorCaught(error)
        }
        if deferredInactive {
            deferredInactive = false
            context.fireChannelInactive()
        }
    }

    private func wait(for bytes: Int, context: ChannelHandlerContext) {
        waiting = true
        let loop = context.eventLoop
        let bound = NIOLoopBound((self, context), eventLoop: loop)
        budget.acquire(bytes) { lease in
            loop.execute {
                let (handler, context) = bound.value
                handler.granted(lease, context: context)
            }
        }
    }

    private func granted(_ lease: PendingBudget.Lease, context: ChannelHandlerContext) {
        waiting = false
        guard !removed, let frame = held.popFirst() else {
            lease.release()
            return
        }
        context.fireChannelRead(wrapInboundOut(ReceivedFrame(frame: frame, lease: lease)))
        deliver(context: context)
        context.fireChannelReadComplete()
        if !waiting, readPending {
            readPending = false
            context.read()
        }
    }

    func read(context: ChannelHandlerContext) {
        if waiting { readPending = true } else { context.read() }
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        if held.isEmpty { context.fireErrorCaught(error) } else if deferredError == nil { deferredError = error }
    }

    func channelInactive(context: ChannelHandlerContext) {
        if held.isEmpty { context.fireChannelInactive() } else { deferredInactive = true }
    }

    func handlerRemoved(context: ChannelHandlerContext) {
        removed = true
        held.removeAll()
    }
}
