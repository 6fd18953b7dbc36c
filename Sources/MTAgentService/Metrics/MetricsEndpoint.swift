import Glibc
import Logging
import NIOCore
import NIOHTTP1
import NIOPosix
import ServiceLifecycle

/// The Prometheus endpoint (config `metrics_address`, docs/metrics.md): a small HTTP/1.1 server
/// that answers `GET /metrics` with the text exposition, 404 for any other path and 405 for any
/// other method. It is bound by `bind` before the service group starts, so a taken port stops
/// `serve` before it accepts a sender; `run` serves until graceful shutdown.
public final class MetricsEndpoint: Service, Sendable {
    typealias Connection = NIOAsyncChannel<HTTPServerRequestPart, HTTPServerResponsePart>

    /// Where it listens, as `HOST:PORT` (the port bound when 0 was asked for).
    public let address: String
    let server: NIOAsyncChannel<Connection, Never>
    let exposition: @Sendable () async -> [UInt8]
    let logger: Logger

    /// The text exposition format Prometheus reads (0.0.4).
    static let contentType = "text/plain; version=0.0.4; charset=utf-8"

    private init(address: String, server: NIOAsyncChannel<Connection, Never>, exposition: @escaping @Sendable () async -> [UInt8], logger: Logger) {
        self.address = address; self.server = server; self.exposition = exposition; self.logger = logger
    }

    /// Listens on `host:port`; `exposition` is called for every scrape. A failure names
    /// `metrics_address`, which is what the admin has to change.
    public static func bind(host: String, port: Int, group: any EventLoopGroup = MultiThreadedEventLoopGroup.singleton,
                            exposition: @escaping @Sendable () async -> [UInt8], logger: Logger) async throws -> MetricsEndpoint {
        let requested = host.contains(":") ? "[\(host)]:\(port)" : "\(host):\(port)"
        let server: NIOAsyncChannel<Connection, Never>
        do {
            server = try await ServerBootstrap(group: group)
                .serverChannelOption(.socketOption(.so_reuseaddr), value: 1)
                .bind(host: host, port: port) { child in
                    child.eventLoop.makeCompletedFuture {
                        try child.pipeline.syncOperations.configureHTTPServerPipeline(withErrorHandling: true)
                        return try Connection(wrappingChannelSynchronously: child)
                    }
                }
        } catch {
            throw MetricsEndpointError.bind(requested, error)
        }
        let bound = server.channel.localAddress.map(Self.describe) ?? requested
        return MetricsEndpoint(address: bound, server: server, exposition: exposition, logger: logger)
    }

    public func run() async throws {
        logger.notice("metrics endpoint listening", metadata: ["address": "\(address)"])
        let (server, exposition, logger) = (self.server, self.exposition, self.logger)
        try await withGracefulShutdownHandler {
            try await withThrowingDiscardingTaskGroup { tasks in
                try await server.executeThenClose { connections in
                    for try await connection in connections {
                        // Scrapers keep their connection open between scrapes: end it on shutdown.
                        tasks.addTask {
                            await cancelWhenGracefulShutdown { await Self.serve(connection, exposition: exposition, logger: logger) }
                        }
                    }
                }
            }
        } onGracefulShutdown: {
            server.channel.close(promise: nil)
        }
    }

    /// One connection: each request answered in turn, kept open while the client asks for keep-alive.
    static func serve(_ connection: Connection, exposition: @Sendable () async -> [UInt8], logger: Logger) async {
        do {
            try await connection.executeThenClose { inbound, outbound in
                var head: HTTPRequestHead?
                for try await part in inbound {
                    switch part {
                    case .head(let h):
                        head = h
                    case .body:
                        continue  // no request of this endpoint has a body worth reading
                    case .end:
                        guard let request = head else { continue }
                        head = nil
                        let (status, body) = await answer(request, exposition: exposition)
                        var headers = HTTPHeaders()
                        headers.add(name: "Content-Type", value: status == .ok ? contentType : "text/plain; charset=utf-8")
                        headers.add(name: "Content-Length", value: "\(body.count)")
                        if status == .methodNotAllowed { headers.add(name: "Allow", value: "GET") }
                        if !request.isKeepAlive { headers.add(name: "Connection", value: "close") }
                        try await outbound.write(.head(HTTPResponseHead(version: request.version, status: status, headers: headers)))
                        try await outbound.write(.body(.byteBuffer(ByteBuffer(bytes: body))))
                        try await outbound.write(.end(nil))
                        if !request.isKeepAlive { return }
                    }
                }
            }
        } catch {
            logger.debug("metrics connection ended", metadata: ["error": "\(error)"])
        }
    }

    /// The answer to one request: what is asked, not how it is framed.
    static func answer(_ request: HTTPRequestHead, exposition: @Sendable () async -> [UInt8]) async -> (HTTPResponseStatus, [UInt8]) {
        let path = request.uri.split(separator: "?", maxSplits: 1, omittingEmptySubsequences: false).first.map(String.init) ?? request.uri
        guard path == "/metrics" else {
            return (.notFound, Array("not found: the metrics are at /metrics\n".utf8))
        }
        guard request.method == .GET else {
            return (.methodNotAllowed, Array("method not allowed: use GET\n".utf8))
        }
        return (.ok, await exposition())
    }

    static func describe(_ address: SocketAddress) -> String {
        switch address {
        case .v6: "[\(address.ipAddress ?? "?")]:\(address.port ?? 0)"
        default: "\(address.ipAddress ?? "?"):\(address.port ?? 0)"
        }
    }
}

public enum MetricsEndpointError: Error, CustomStringConvertible {
    case bind(String, any Error)

    public var description: String {
        switch self {
        case .bind(let address, let error):
            "metrics_address \(address): cannot listen: \((error as? IOError).map { String(cString: strerror($0.errnoCode)) } ?? "\(error)")"
                + " — set metrics_address in the configuration to a free HOST:PORT, or to off"
        }
    }
}
