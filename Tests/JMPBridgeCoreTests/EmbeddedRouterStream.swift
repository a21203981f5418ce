import Foundation
import JMPProtocol
import JMPTargets
import Logging
import NIOCore
import NIOEmbedded
import NIOHPACK
import NIOHTTP2
import Testing

@testable import JMPBridgeCore

/// A ``RouterStreamHandler`` on an `EmbeddedChannel`, driven frame by frame: the test plays the
/// HTTP/2 client and, through ``FakeStreamTarget``, the target, and decides when a target
/// connects and when each write to it completes. Time is the embedded loop's.
final class EmbeddedRouterStream {
    /// Counts the reads the handler lets through to the channel.
    final class ReadCounter: ChannelOutboundHandler {
        typealias OutboundIn = HTTP2Frame.FramePayload
        private(set) var count = 0

        func read(context: ChannelHandlerContext) {
            self.count += 1
            context.read()
        }
    }

    /// Holds the handler's writes while closed, to show what waits for a write to complete.
    final class WriteGate: ChannelOutboundHandler {
        typealias OutboundIn = HTTP2Frame.FramePayload
        private var context: ChannelHandlerContext?
        private var held: [(NIOAny, EventLoopPromise<Void>?)] = []
        var isOpen = true

        func handlerAdded(context: ChannelHandlerContext) { self.context = context }

        func write(context: ChannelHandlerContext, data: NIOAny, promise: EventLoopPromise<Void>?) {
            if self.isOpen {
                context.write(data, promise: promise)
            } else {
                self.held.append((data, promise))
            }
        }

        func flush(context: ChannelHandlerContext) {
            if self.isOpen { context.flush() }
        }

        /// Lets the held writes through, flushed.
        func open() {
            self.isOpen = true
            guard let context = self.context else { return }
            let held = self.held
            self.held = []
            for (data, promise) in held { context.write(data, promise: promise) }
            context.flush()
        }
    }

    /// The targets the handler asked for: one per stream.
    final class Openings {
        var routes: [String] = []
        var promises: [EventLoopPromise<any StreamTarget>] = []
    }

    let channel: EmbeddedChannel
    let handler: RouterStreamHandler
    let reads = ReadCounter()
    let gate = WriteGate()
    let openings = Openings()
    let statistics = BridgeStatistics()

    init(limits: Limits = Limits(), linger: TimeAmount = .seconds(5)) throws {
        var logger = Logger(label: "jmp-bridge-test")
        logger.logLevel = .critical
        let environment = BridgeContext(
            routes: RouteTable(
                routes: ["echo": RouteConfiguration(name: "echo", target: .unix(path: "/nonexistent/echo.sock"))],
                defaultRoute: "echo"
            ),
            limits: limits,
            linger: linger,
            statistics: self.statistics,
            logger: logger
        )
        let openings = self.openings
        let opener = StreamTargetOpener(environment: environment) { route, _, eventLoop in
            let promise = eventLoop.makePromise(of: (any StreamTarget).self)
            openings.routes.append(route.name)
            openings.promises.append(promise)
            return .success(promise.futureResult)
        }
        self.handler = RouterStreamHandler(
            environment: environment,
            security: ListenerSecurity(listener: "test", verifier: nil, peer: nil),
            connection: ConnectionStreams(),
            opener: opener
        )
        self.channel = EmbeddedChannel()
        try self.channel.pipeline.syncOperations.addHandlers([self.reads, self.gate, self.handler])
        try self.channel.connect(to: SocketAddress(ipAddress: "127.0.0.1", port: 1)).wait()
    }

    deinit {
        _ = try? self.channel.finish(acceptAlreadyClosed: true)
    }

    // MARK: - The client

    static let requestHeaders: HPACKHeaders = [
        ":method": "POST", ":path": RouterService.streamPath, "content-type": "application/grpc",
    ]

    /// Sends request headers: a valid Stream request with `extra` added.
    /// The client sends nothing for ``RequestDrain/quietTime``: an error status held back while
    /// the client might still be writing goes out now.
    func clientPauses() {
        self.channel.embeddedEventLoop.advanceTime(by: RequestDrain.quietTime)
    }

    func sendHeaders(_ extra: [(String, String)] = [], endStream: Bool = false) throws {
        var headers = Self.requestHeaders
        for (name, value) in extra { headers.replaceOrAdd(name: name, value: value) }
        try self.channel.writeInbound(HTTP2Frame.FramePayload.headers(.init(headers: headers, endStream: endStream)))
    }

    /// Sends one DATA frame holding `messages` (see ``data(_:)`` and ``control(_:)``).
    func send(_ messages: [ByteBuffer], endStream: Bool = false) throws {
        var bytes = ByteBuffer()
        for var message in messages { bytes.writeBuffer(&message) }
        try self.channel.writeInbound(
            HTTP2Frame.FramePayload.data(.init(data: .byteBuffer(bytes), endStream: endStream))
        )
    }

    /// A StreamRequest DATA message carrying `text`, with its gRPC prefix.
    static func data(_ text: String) -> ByteBuffer {
        var message = ByteBuffer()
        RouterFrameCodec.encodeDataPrefix(payloadLength: text.utf8.count, into: &message)
        message.writeString(text)
        return message
    }

    /// A StreamRequest of `type` without payload, with its gRPC prefix.
    static func control(_ type: RouterFrameType) -> ByteBuffer {
        var message = ByteBuffer()
        RouterFrameCodec.encodeControl(type, into: &message)
        return message
    }

    // MARK: - The target

    /// Completes the pending opening with `target`.
    func connect(_ target: FakeStreamTarget) {
        guard let promise = self.openings.promises.last else {
            Issue.record("the handler opened no target")
            return
        }
        promise.assumeIsolated().succeed(target)
    }

    // MARK: - What the client receives

    /// One frame the handler sent, as the client sees it.
    enum Sent: Equatable {
        /// Response headers (`:status`), not ending the stream.
        case headers(status: String?)
        /// A HEADERS frame ending the stream: `grpc-status` (nil for a plain HTTP error) and
        /// whether `:status` was in it (a trailers-only response or an HTTP error).
        case end(grpcStatus: Int?, message: String?, withStatusLine: Bool)
        /// StreamResponse DATA messages, decoded.
        case messages([String])
        case reset(HTTP2ErrorCode)
    }

    /// Everything sent since the last call, in order.
    func sent() throws -> [Sent] {
        var result: [Sent] = []
        while let payload = try self.channel.readOutbound(as: HTTP2Frame.FramePayload.self) {
            switch payload {
            case .headers(let headers) where headers.endStream:
                let message = headers.headers.first(name: "grpc-message")
                result.append(
                    .end(
                        grpcStatus: headers.headers.first(name: "grpc-status").flatMap { Int($0) },
                        message: message?.removingPercentEncoding ?? message,
                        withStatusLine: headers.headers.first(name: ":status") != nil
                    )
                )
            case .headers(let headers):
                result.append(.headers(status: headers.headers.first(name: ":status")))
            case .data(let data):
                guard case .byteBuffer(let bytes) = data.data else {
                    Issue.record("a file region was sent")
                    continue
                }
                var deframer = GRPCMessageDeframer(maximumMessageLength: 1 << 20)
                var texts: [String] = []
                try deframer.process(bytes) { message in
                    let frame = try RouterFrameCodec.decode(message)
                    texts.append(frame.type == .data ? String(buffer: frame.payload) : "<\(frame.type)>")
                }
                result.append(.messages(texts))
            case .rstStream(let code):
                result.append(.reset(code))
            default:
                Issue.record("unexpected frame \(payload)")
            }
        }
        return result
    }
}
