import Foundation
import Glibc
import Logging
import MTAgentCore
import NIOCore
import NIOPosix
import ServiceLifecycle

/// What the control socket's requests are answered by.
public protocol ControlHandler: Sendable {
    func handle(_ request: ControlRequest, events: @escaping @Sendable (ControlEvent) -> Void) async -> ControlEvent
}

/// The service's local control socket: a Unix socket, mode 0600 (root only), one JSON request
/// per connection answered by JSON lines (docs/control-socket.md). `points`, `failover` and
/// `commit` go through it while the service runs, so only the service touches the journals.
public struct ControlServer: Service {
    let path: String
    let handler: any ControlHandler
    let logger: Logger

    public init(path: String, handler: any ControlHandler, logger: Logger) {
        self.path = path; self.handler = handler; self.logger = logger
    }

    public func run() async throws {
        // Created 0600 from the start: no moment where another user could connect.
        let previous = umask(0o177)
        let server: NIOAsyncChannel<NIOAsyncChannel<ByteBuffer, ByteBuffer>, Never>
        do {
            server = try await ServerBootstrap(group: MultiThreadedEventLoopGroup.singleton)
                .bind(unixDomainSocketPath: path, cleanupExistingSocketFile: true) { child in
                    child.eventLoop.makeCompletedFuture {
                        try child.pipeline.syncOperations.addHandler(ByteToMessageHandler(LineDecoder()))
                        return try NIOAsyncChannel<ByteBuffer, ByteBuffer>(wrappingChannelSynchronously: child)
                    }
                }
            umask(previous)
        } catch {
            umask(previous)
            throw error
        }
        logger.info("control socket listening", metadata: ["path": "\(path)"])
        let (handler, logger) = (self.handler, self.logger)
        try await withGracefulShutdownHandler {
            try await withThrowingDiscardingTaskGroup { tasks in
                try await server.executeThenClose { connections in
                    for try await connection in connections {
                        tasks.addTask { await Self.serve(connection, handler: handler, logger: logger) }
                    }
                }
            }
        } onGracefulShutdown: {
            server.channel.close(promise: nil)
        }
        unlink(path)
    }

    private static func serve(_ connection: NIOAsyncChannel<ByteBuffer, ByteBuffer>, handler: any ControlHandler, logger: Logger) async {
        try? await connection.executeThenClose { inbound, outbound in
            guard var line = try await inbound.first(where: { _ in true }) else { return }
            let request: ControlRequest
            do {
                request = try JSONDecoder().decode(ControlRequest.self, from: Data(line.readBytes(length: line.readableBytes) ?? []))
            } catch {
                try await outbound.write(encode(ControlEvent(error: "the control request is not valid JSON: \(error)")))
                return
            }
            // Status is polled by scripts and monitoring: only at debug, so it never floods the journal.
            logger.log(level: request.command == .status ? .debug : .info, "control request",
                       metadata: ["command": "\(request.command.rawValue)", "group.id": "\(request.group ?? "-")"])
            let (stream, continuation) = AsyncStream<ControlEvent>.makeStream()
            let writer = Task {
                for await event in stream { try? await outbound.write(encode(event)) }
            }
            let result = await handler.handle(request) { continuation.yield($0) }
            continuation.yield(result)
            continuation.finish()
            await writer.value
        }
    }

    static func encode(_ event: ControlEvent) -> ByteBuffer {
        var bytes = (try? JSONEncoder().encode(event)) ?? Data(#"{"error":"cannot encode the answer"}"#.utf8)
        bytes.append(UInt8(ascii: "\n"))
        return ByteBuffer(bytes: bytes)
    }
}

/// Splits a stream into newline-terminated lines (without the newline); lines are at most 1 MiB.
struct LineDecoder: ByteToMessageDecoder {
    typealias InboundOut = ByteBuffer

    func decode(context: ChannelHandlerContext, buffer: inout ByteBuffer) throws -> DecodingState {
        guard let newline = buffer.readableBytesView.firstIndex(of: UInt8(ascii: "\n")) else {
            if buffer.readableBytes > 1 << 20 { throw LineTooLong() }
            return .needMoreData
        }
        let length = newline - buffer.readerIndex
        let line = buffer.readSlice(length: length)!
        buffer.moveReaderIndex(forwardBy: 1)
        context.fireChannelRead(Self.wrapInboundOut(line))
        return .continue
    }

    struct LineTooLong: Error {}
}

/// Talks to a running service's control socket.
public enum ControlClient {
    /// Sends `request` and hands every answer line to `events`; returns the final one.
    public static func send(_ request: ControlRequest, to path: String, events: @escaping (ControlEvent) -> Void) async throws -> ControlEvent {
        let channel = try await ClientBootstrap(group: MultiThreadedEventLoopGroup.singleton)
            .connect(unixDomainSocketPath: path) { channel in
                channel.eventLoop.makeCompletedFuture {
                    try channel.pipeline.syncOperations.addHandler(ByteToMessageHandler(LineDecoder()))
                    return try NIOAsyncChannel<ByteBuffer, ByteBuffer>(wrappingChannelSynchronously: channel)
                }
            }
        return try await channel.executeThenClose { inbound, outbound in
            var line = try JSONEncoder().encode(request)
            line.append(UInt8(ascii: "\n"))
            try await outbound.write(ByteBuffer(bytes: line))
            for try await var answer in inbound {
                let event = try JSONDecoder().decode(ControlEvent.self, from: Data(answer.readBytes(length: answer.readableBytes) ?? []))
                if event.isFinal { return event }
                events(event)
            }
            throw ControlClientError.closedEarly(path)
        }
    }
}

public enum ControlClientError: Error, CustomStringConvertible {
    case closedEarly(String)
    public var description: String {
        switch self {
        case .closedEarly(let path): "the service closed the control socket \(path) before answering (see its log)"
        }
    }
}
