import Metrics
import MTAgentCore
import NIOConcurrencyHelpers

/// The gauges that describe a state rather than count events — journal size, recovery points,
/// RPO lag, resync progress — set at each scrape from the `ServiceStatus` that `mt-agent status`
/// shows, so both always agree. A pair or group that is gone (committed) loses its series.
final class StatusGauges: Sendable {
    struct Key: Hashable {
        var name: String
        var pair: String?
        var group: String

        var dimensions: [(String, String)] { (pair.map { [("pair", $0)] } ?? []) + [("group", group)] }
    }

    let factory: any MetricsFactory
    private let gauges = NIOLockedValueBox<[Key: Gauge]>([:])

    init(factory: any MetricsFactory = MetricsSystem.factory) {
        self.factory = factory
    }

    /// The value of every gauge `status` implies.
    static func values(_ status: ServiceStatus) -> [Key: Double] {
        var values: [Key: Double] = [:]
        for group in status.groups {
            values[Key(name: "mt_agent_recovery_points", group: group.group)] = Double(group.points)
            if let lag = group.rpoLagSeconds {
                values[Key(name: "mt_agent_rpo_lag_seconds", group: group.group)] = lag
            }
            for pair in group.pairs {
                values[Key(name: "mt_agent_journal_bytes", pair: pair.pair, group: group.group)] = Double(pair.journalBytes)
                values[Key(name: "mt_agent_resync_progress_ratio", pair: pair.pair, group: group.group)] = resyncRatio(pair)
            }
        }
        return values
    }

    /// 1 in sync; the part copied while resyncing; 0 before a resync and when one is required
    /// (the next one starts over, comparing the whole disk).
    static func resyncRatio(_ pair: ServiceStatus.Pair) -> Double {
        switch pair.state {
        case PairState.inSync.rawValue: 1
        case PairState.resyncing.rawValue where pair.targetBytes > 0: min(1, Double(pair.resyncOffset) / Double(pair.targetBytes))
        default: 0
        }
    }

    func update(from status: ServiceStatus) {
        let values = Self.values(status)
        gauges.withLockedValue { gauges in
            for (key, gauge) in gauges where values[key] == nil {
                gauge.destroy()
                gauges[key] = nil
            }
            for (key, value) in values {
                let gauge = gauges[key] ?? Gauge(label: key.name, dimensions: key.dimensions, factory: factory)
                gauges[key] = gauge
                gauge.record(value)
            }
        }
    }
}
