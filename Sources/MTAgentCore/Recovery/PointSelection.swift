import Foundation

/// A recovery point as the operator sees it: `mt-agent points` lists these, `failover --point`
/// picks one.
public struct PointSummary: Sendable, Codable, Equatable {
    /// The catalog's id, stable for the point's life: what `--point ID` names.
    public var id: Int64
    public var tagID: UInt64
    public var kind: TagKind
    public var name: String
    /// When the tag was taken on the source, unix nanoseconds.
    public var sourceTime: UInt64
    /// When the master target recorded the point (every pair had the tag durable).
    public var recordedAt: Date

    public init(id: Int64, tagID: UInt64, kind: TagKind, name: String, sourceTime: UInt64, recordedAt: Date) {
        self.id = id; self.tagID = tagID; self.kind = kind; self.name = name
        self.sourceTime = sourceTime; self.recordedAt = recordedAt
    }
}

/// What `failover --point` accepts: `latest`, `latest-app`, a point id, or a time (ISO 8601, e.g.
/// `2026-11-26T20:00:00Z`, or unix seconds with `@`, e.g. `@1795723200`) meaning the newest point
/// taken at or before it.
public enum PointSelector: Sendable, Equatable, CustomStringConvertible {
    case latest
    case latestApp
    case id(Int64)
    case time(UInt64)

    public init?(_ text: String) {
        switch text {
        case "latest": self = .latest
        case "latest-app": self = .latestApp
        default:
            if let id = Int64(text), id > 0 {
                self = .id(id)
            } else if text.hasPrefix("@"), let seconds = UInt64(text.dropFirst()) {
                self = .time(seconds * 1_000_000_000)
            } else if let date = Self.parseTime(text), date.timeIntervalSince1970 >= 0 {
                // Milliseconds, rounded: a Double cannot hold unix nanoseconds exactly.
                self = .time(UInt64((date.timeIntervalSince1970 * 1000).rounded()) * 1_000_000)
            } else {
                return nil
            }
        }
    }

    private static func parseTime(_ text: String) -> Date? {
        let withFraction = ISO8601DateFormatter()
        withFraction.formatOptions = [.withInternetDateTime, .withFractionalSeconds]
        return ISO8601DateFormatter().date(from: text) ?? withFraction.date(from: text)
    }

    public var description: String {
        switch self {
        case .latest: "latest"
        case .latestApp: "latest-app"
        case .id(let id): "\(id)"
        case .time(let ns): "@\(ns / 1_000_000_000)"
        }
    }

    /// The point this selector names among `points` (any order), or why there is none.
    public func select(from points: [PointSummary], group: String) -> Result<PointSummary, SelectionError> {
        let newestFirst = points.sorted { ($0.sourceTime, $0.id) > ($1.sourceTime, $1.id) }
        guard let newest = newestFirst.first else { return .failure(.noPoints(group: group)) }
        switch self {
        case .latest:
            return .success(newest)
        case .latestApp:
            guard let app = newestFirst.first(where: { $0.kind == .app }) else {
                return .failure(.noAppPoint(group: group, latest: newest))
            }
            return .success(app)
        case .id(let id):
            guard let point = points.first(where: { $0.id == id }) else {
                return .failure(.unknownID(group: group, id: id, oldest: newestFirst.last!, newest: newest))
            }
            return .success(point)
        case .time(let ns):
            guard let point = newestFirst.first(where: { $0.sourceTime <= ns }) else {
                return .failure(.beforeOldest(group: group, time: ns, oldest: newestFirst.last!))
            }
            return .success(point)
        }
    }
}

public enum SelectionError: Error, Equatable, CustomStringConvertible {
    case noPoints(group: String)
    case noAppPoint(group: String, latest: PointSummary)
    case unknownID(group: String, id: Int64, oldest: PointSummary, newest: PointSummary)
    case beforeOldest(group: String, time: UInt64, oldest: PointSummary)

    public var description: String {
        switch self {
        case .noPoints(let group):
            return "group \(group) has no recovery point yet: a point exists once every pair of the group is in sync "
                + "and has a tag durable"
        case .noAppPoint(let group, let latest):
            return "group \(group) has no app-consistent point; the latest crash-consistent one is \(latest.id) "
                + "(\(PointSummary.format(latest.sourceTime))) — use --point latest or an id from 'mt-agent points'"
        case .unknownID(let group, let id, let oldest, let newest):
            return "group \(group) has no recovery point \(id); its points run from \(oldest.id) to \(newest.id) "
                + "— see 'mt-agent points --group \(group)'"
        case .beforeOldest(let group, let time, let oldest):
            return "\(PointSummary.format(time)) is before the oldest recovery point of group \(group), "
                + "\(oldest.id) at \(PointSummary.format(oldest.sourceTime))"
        }
    }
}

extension PointSummary {
    /// Unix nanoseconds as UTC ISO 8601 with milliseconds (`2026-11-26T20:14:45.462Z`), the form
    /// `points` prints and `--point` accepts. Computed directly: a DateFormatter per call made
    /// listing 10,000 points take seconds.
    public static func format(_ ns: UInt64) -> String {
        let millis = ns / 1_000_000
        let seconds = Int64(millis / 1000)
        let days = seconds / 86_400
        let secondOfDay = Int(seconds % 86_400)
        // Civil date from days since 1970-01-01 (H. Hinnant's algorithm, proleptic Gregorian).
        let z = days + 719_468
        let era = (z >= 0 ? z : z - 146_096) / 146_097
        let doe = z - era * 146_097
        let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365
        let doy = doe - (365 * yoe + yoe / 4 - yoe / 100)
        let mp = (5 * doy + 2) / 153
        let day = doy - (153 * mp + 2) / 5 + 1
        let month = mp < 10 ? mp + 3 : mp - 9
        let year = yoe + era * 400 + (month <= 2 ? 1 : 0)
        func two(_ v: Int64) -> String { v < 10 ? "0\(v)" : "\(v)" }
        let ms = Int64(millis % 1000)
        let msText = ms < 10 ? "00\(ms)" : ms < 100 ? "0\(ms)" : "\(ms)"
        return "\(year)-\(two(month))-\(two(day))T\(two(Int64(secondOfDay / 3600)))"
            + ":\(two(Int64(secondOfDay / 60 % 60))):\(two(Int64(secondOfDay % 60))).\(msText)Z"
    }
}
