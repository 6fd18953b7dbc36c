import NIOCore
import Synchronization

/// The service-wide budget of passphrase proofs checked per second, on top of the per-address
/// `AuthThrottle`: each check takes the next free slot, slots `1 / rate` apart, so in any window of
/// T seconds at most `rate × T + 1` proofs are checked, from any number of addresses. A slot is
/// only taken when it falls before the caller's handshake deadline, so a flood cannot book slots
/// it will never use and delay a sender that comes later past its own deadline.
final class ProofBudget: Sendable {
    let interval: TimeAmount
    private let nextFree = Mutex<NIODeadline>(.uptimeNanoseconds(0))

    init(checksPerSecond: Int) {
        interval = .nanoseconds(1_000_000_000 / Int64(max(1, checksPerSecond)))
    }

    /// When the caller may check its proof, or nil when no slot is free before `latest`.
    func reserve(now: NIODeadline = .now(), latest: NIODeadline) -> NIODeadline? {
        nextFree.withLock { next in
            let slot = max(now, next)
            guard slot <= latest else { return nil }
            next = slot + interval
            return slot
        }
    }
}
