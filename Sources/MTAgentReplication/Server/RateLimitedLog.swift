import NIOCore
import Synchronization

/// Lets a limit that bites during a flood say so once per `interval`, with how many times it bit
/// in between, instead of once per refused peer.
final class RateLimitedLog: Sendable {
    let interval: TimeAmount
    private let state = Mutex<(last: NIODeadline?, suppressed: Int)>((nil, 0))

    init(interval: TimeAmount = .seconds(10)) { self.interval = interval }

    /// Calls `body` with the number of events since the last call, at most once per interval.
    func event(now: NIODeadline = .now(), _ body: (_ since: Int) -> Void) {
        let since: Int? = state.withLock { s in
            s.suppressed += 1
            if let last = s.last, now - last < interval { return nil }
            let count = s.suppressed
            s = (now, 0)
            return count
        }
        if let since { body(since) }
    }
}
