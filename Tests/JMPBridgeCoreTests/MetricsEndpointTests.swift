import Foundation
import NIOCore
import NIOPosix
import Synchronization
import Testing

@testable import JMPMetrics

/// The metrics endpoint's bounds, over real TCP connections: the connection limit and the idle
/// timeout. (Scrapes themselves are tested in Tests/Interop/test_metrics.py.)
@Suite("Metrics endpoint", .timeLimit(.minutes(1)))
struct MetricsEndpointTests {
    /// A raw HTTP/1.1 client connection: what it sends and reads is bytes, as on the wire.
    private struct RawConnection {
        let channel: NIOAsyncChannel<ByteBuffer, ByteBuffer>

        static func open(to port: Int, group: any EventLoopGroup) async throws -> RawConnection {
            let channel = try await ClientBootstrap(group: group).connect(host: "127.0.0.1", port: port) { channel in
                channel.eventLoop.makeCompletedFuture {
                    try NIOAsyncChannel<ByteBuffer, ByteBuffer>(wrappingChannelSynchronously: channel)
                }
            }
            return RawConnection(channel: channel)
        }
    }

    /// Sends `request` and reads one whole response (head and a `Content-Length` body); nil: the
    /// server closed first.
    private func exchange(
        _ request: String,
        _ outbound: NIOAsyncChannelOutboundWriter<ByteBuffer>,
        _ inbound: inout NIOAsyncChannelInboundStream<ByteBuffer>.AsyncIterator
    ) async throws -> String? {
        if !request.isEmpty { try await outbound.write(ByteBuffer(string: request)) }
        var received = ""
        while true {
            if let end = received.range(of: "\r\n\r\n") {
                let head = received[..<end.lowerBound].lowercased()
                let length =
                    head.split(separator: "\r\n").first { $0.hasPrefix("content-length:") }
                    .flatMap { Int($0.dropFirst("content-length:".count).trimmingCharacters(in: .whitespaces)) } ?? 0
                if received[end.upperBound...].utf8.count >= length { return received }
            }
            guard let chunk = try await inbound.next() else { return received.isEmpty ? nil : received }
            received += String(buffer: chunk)
        }
    }

    /// Reads until the server closes; returns what came.
    private func readToEnd(_ inbound: inout NIOAsyncChannelInboundStream<ByteBuffer>.AsyncIterator) async throws
        -> String
    {
        var received = ""
        while let chunk = try await inbound.next() { received += String(buffer: chunk) }
        return received
    }

    /// Sends `request` and expects `200 OK` with the scrape.
    private func expectAnswered(
        _ request: String,
        _ outbound: NIOAsyncChannelOutboundWriter<ByteBuffer>,
        _ inbound: inout NIOAsyncChannelInboundStream<ByteBuffer>.AsyncIterator,
        sourceLocation: SourceLocation = #_sourceLocation
    ) async throws {
        let answer = try await self.exchange(request, outbound, &inbound) ?? "(closed)"
        #expect(answer.hasPrefix("HTTP/1.1 200 OK\r\n"), "answer: \(answer)", sourceLocation: sourceLocation)
        #expect(answer.hasSuffix("\r\n\r\njmp_bridge_test 1\n"), "answer: \(answer)", sourceLocation: sourceLocation)
    }

    /// Expects the server to close the connection with nothing more sent.
    private func expectClosedUnanswered(
        _ inbound: inout NIOAsyncChannelInboundStream<ByteBuffer>.AsyncIterator,
        sourceLocation: SourceLocation = #_sourceLocation
    ) async throws {
        let rest = try await self.readToEnd(&inbound)
        #expect(rest == "", sourceLocation: sourceLocation)
    }

    private static let scrape = "GET /metrics HTTP/1.1\r\nHost: test\r\n\r\n"

    private func serve(
        _ limits: MetricsEndpoint.Limits,
        group: any EventLoopGroup,
        refused: @escaping @Sendable () -> Void = {}
    ) async throws -> (any Channel, Int) {
        let server = try await MetricsEndpoint.bootstrap(group: group, limits: limits, refused: refused) { loop in
            loop.makeSucceededFuture(Array("jmp_bridge_test 1\n".utf8))
        }.bind(host: "127.0.0.1", port: 0).get()
        return (server, server.localAddress?.port ?? 0)
    }

    @Test("one connection over the limit is answered 503 and closed; the served ones go on; a freed place is taken")
    func connectionLimit() async throws {
        // One thread: a connection's close is counted out before the next accept is handled.
        let serverGroup = MultiThreadedEventLoopGroup(numberOfThreads: 1)
        let clientGroup = MultiThreadedEventLoopGroup(numberOfThreads: 1)
        let refusals = Atomic<Int>(0)
        let (server, port) = try await self.serve(
            MetricsEndpoint.Limits(maxConnections: 2, idleTimeout: .seconds(30)),
            group: serverGroup,
            refused: { refusals.add(1, ordering: .relaxed) }
        )
        let first = try await RawConnection.open(to: port, group: clientGroup)
        let second = try await RawConnection.open(to: port, group: clientGroup)
        try await first.channel.executeThenClose { firstIn, firstOut in
            var firstIn = firstIn.makeAsyncIterator()
            try await self.expectAnswered(Self.scrape, firstOut, &firstIn)
            try await second.channel.executeThenClose { secondIn, secondOut in
                var secondIn = secondIn.makeAsyncIterator()
                try await self.expectAnswered(Self.scrape, secondOut, &secondIn)

                // The third: 503 with the reason, and the server closes it.
                let third = try await RawConnection.open(to: port, group: clientGroup)
                try await third.channel.executeThenClose { thirdIn, _ in
                    // The answer comes without a request (a request written after it may meet
                    // the closed connection: NIO closes a client channel at end of input).
                    var thirdIn = thirdIn.makeAsyncIterator()
                    let refused = try await self.readToEnd(&thirdIn)
                    #expect(refused.hasPrefix("HTTP/1.1 503 Service Unavailable\r\n"))
                    #expect(refused.contains("Connection: close\r\n"))
                    #expect(
                        refused.hasSuffix(
                            "\r\n\r\njmp-bridge metrics: too many connections (2 open), try again later\n"
                        )
                    )
                }
                #expect(refusals.load(ordering: .relaxed) == 1)

                // The two served connections are untouched.
                try await self.expectAnswered(Self.scrape, firstOut, &firstIn)

                // The second asks to close: its place is free for the next connection.
                let last = "GET /metrics HTTP/1.1\r\nHost: test\r\nConnection: close\r\n\r\n"
                try await self.expectAnswered(last, secondOut, &secondIn)
                try await self.expectClosedUnanswered(&secondIn)
            }
            let next = try await RawConnection.open(to: port, group: clientGroup)
            try await next.channel.executeThenClose { nextIn, nextOut in
                var nextIn = nextIn.makeAsyncIterator()
                try await self.expectAnswered(Self.scrape, nextOut, &nextIn)
            }
        }
        #expect(refusals.load(ordering: .relaxed) == 1)
        try await server.close()
        try await clientGroup.shutdownGracefully()
        try await serverGroup.shutdownGracefully()
    }

    @Test("a connection that sends no whole request in time is closed; one that keeps scraping stays")
    func idleTimeout() async throws {
        let serverGroup = MultiThreadedEventLoopGroup(numberOfThreads: 1)
        let clientGroup = MultiThreadedEventLoopGroup(numberOfThreads: 1)
        let timeout = 3.0
        let (server, port) = try await self.serve(
            MetricsEndpoint.Limits(maxConnections: 4, idleTimeout: .milliseconds(Int64(timeout * 1000))),
            group: serverGroup
        )
        let atLeast = TimeAmount.milliseconds(Int64(timeout * 900))

        // Half a request head, then nothing: closed after the timeout, unanswered.
        let slow = try await TimedClient.run(
            ["GET /metrics HTTP/1.1\r\nHost: te"],
            pause: .zero,
            port: port,
            group: clientGroup
        )
        #expect(slow.answers.isEmpty && slow.rest.isEmpty, "\(slow)")
        #expect(slow.closed - slow.connected >= atLeast, "\(slow)")

        // Scrapes closer together than the timeout, for longer than the timeout in all: each is
        // answered on the same connection (the timer starts again at each response). Then it
        // idles, and is closed.
        let kept = try await TimedClient.run(
            Array(repeating: Self.scrape, count: 6),
            pause: .milliseconds(Int64(timeout * 250)),
            port: port,
            group: clientGroup
        )
        #expect(kept.answers.count == 6 && kept.rest.isEmpty, "\(kept)")
        if let last = kept.answers.last {
            #expect(last - kept.connected > .milliseconds(Int64(timeout * 1000)), "\(kept)")
            #expect(kept.closed - last >= atLeast, "\(kept)")
        }
        try await server.close()
        try await clientGroup.shutdownGracefully()
        try await serverGroup.shutdownGracefully()
    }
}

/// A metrics client that keeps its timetable on its own event loop rather than in the test's
/// tasks, which a loaded machine's cooperative pool may resume seconds late: it sends its
/// requests one at a time, each `pause` after the answer to the one before, and notes (on the
/// loop) when it connected, when each answer was complete and when the server closed the
/// connection.
private final class TimedClient: ChannelInboundHandler {
    typealias InboundIn = ByteBuffer
    typealias OutboundOut = ByteBuffer

    /// What happened, in event-loop time.
    struct Timeline: Sendable {
        var connected = NIODeadline.now()
        /// When each answer (ending with the scrape's body) was complete.
        var answers: [NIODeadline] = []
        var closed = NIODeadline.now()
        /// What arrived after the last whole answer.
        var rest = ""
    }

    private var requests: ArraySlice<String>
    private let pause: TimeAmount
    private let done: EventLoopPromise<Timeline>
    private var timeline = Timeline()

    private init(requests: [String], pause: TimeAmount, done: EventLoopPromise<Timeline>) {
        self.requests = requests[...]
        self.pause = pause
        self.done = done
    }

    /// Connects to the endpoint at `port`, sends `requests` and returns once the server closed.
    static func run(
        _ requests: [String],
        pause: TimeAmount,
        port: Int,
        group: any EventLoopGroup
    ) async throws -> Timeline {
        let eventLoop = group.next()
        let done = eventLoop.makePromise(of: Timeline.self)
        do {
            _ = try await ClientBootstrap(group: eventLoop)
                .channelInitializer { channel in
                    channel.eventLoop.makeCompletedFuture {
                        try channel.pipeline.syncOperations.addHandler(
                            TimedClient(requests: requests, pause: pause, done: done)
                        )
                    }
                }
                .connect(host: "127.0.0.1", port: port).get()
        } catch {
            done.fail(error)
            throw error
        }
        return try await done.futureResult.get()
    }

    func channelActive(context: ChannelHandlerContext) {
        self.timeline.connected = .now()
        self.sendNext(context: context)
        context.fireChannelActive()
    }

    private func sendNext(context: ChannelHandlerContext) {
        guard let request = self.requests.popFirst() else { return }
        context.writeAndFlush(Self.wrapOutboundOut(ByteBuffer(string: request)), promise: nil)
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        self.timeline.rest += String(buffer: Self.unwrapInboundIn(data))
        while let end = self.timeline.rest.range(of: "\r\n\r\njmp_bridge_test 1\n") {
            self.timeline.rest.removeSubrange(..<end.upperBound)
            self.timeline.answers.append(.now())
            let loopBound = NIOLoopBound((self, context), eventLoop: context.eventLoop)
            context.eventLoop.scheduleTask(in: self.pause) {
                let (client, context) = loopBound.value
                client.sendNext(context: context)
            }
        }
    }

    func channelInactive(context: ChannelHandlerContext) {
        self.timeline.closed = .now()
        self.done.succeed(self.timeline)
        context.fireChannelInactive()
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        context.close(promise: nil)
    }
}
