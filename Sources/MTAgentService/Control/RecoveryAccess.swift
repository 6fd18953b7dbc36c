import Foundation
import Logging
import MTAgentJournal
import MTAgentLinux

/// How a recovery command reaches the journals: through the running service's control socket, or —
/// when no service holds the volume's lock — directly, holding that lock itself, so two writers
/// never touch one journal.
public enum RecoveryAccess {
    public enum Route: String, Sendable { case service, direct }

    /// The running service's status, or nil when no service holds the volume's lock.
    public static func status(retention: String) async throws -> ServiceStatus? {
        let layout = RetentionLayout(retention: retention)
        if FileManager.default.fileExists(atPath: layout.base), let lock = try FileLock.tryExclusive(path: layout.lock) {
            lock.release()
            return nil
        }
        guard FileManager.default.fileExists(atPath: layout.base) else { return nil }
        let answer: ControlEvent
        do {
            answer = try await ControlClient.send(ControlRequest(command: .status), to: layout.controlSocket) { _ in }
        } catch {
            throw RecoveryRefusal("the service holds \(layout.lock) but its control socket \(layout.controlSocket) does not answer (\(error))")
        }
        if let error = answer.error { throw RecoveryRefusal(error) }
        guard let status = answer.status else { throw RecoveryRefusal("the service's answer carried no status") }
        return status
    }

    /// Carries out `request` and returns the final answer; progress answers go to `events`.
    public static func run(
        _ request: ControlRequest, retention: String, allowFileTargets: Bool = false, logger: Logger,
        events: @escaping @Sendable (ControlEvent) -> Void
    ) async throws -> (ControlEvent, Route) {
        let layout = RetentionLayout(retention: retention)
        guard FileManager.default.fileExists(atPath: layout.catalog) else {
            throw RecoveryRefusal("no catalog at \(layout.catalog): nothing has replicated onto this master target "
                + "(is retention_path \(retention) right, and mounted?)")
        }
        if let lock = try FileLock.tryExclusive(path: layout.lock) {
            defer { lock.release() }
            let catalog = try Catalog(path: layout.catalog)
            let store = JournalStore(catalog: catalog, retentionPath: retention,
                                     inspector: TargetInspector.forRoot("/", logger: logger), logger: logger,
                                     allowFileTargets: allowFileTargets)
            let desk = RecoveryDesk(recovery: store.recovery(logger: logger), pool: nil)
            return (await desk.handle(request, events: events), .direct)
        }
        do {
            return (try await ControlClient.send(request, to: layout.controlSocket, events: events), .service)
        } catch let error as ControlClientError {
            throw RecoveryRefusal("\(error)")
        } catch {
            throw RecoveryRefusal("the service holds \(layout.lock) but its control socket \(layout.controlSocket) "
                + "does not answer (\(error)); is 'mt-agent serve' starting or stopping? try again")
        }
    }
}
