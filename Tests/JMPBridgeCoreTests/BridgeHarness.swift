import Foundation
import GRPCCore
import GRPCNIOTransportHTTP2
import JMPBridgeCore
import JMPProtocol
import JMPProtocolReference
import Logging
import NIOCore
import NIOPosix
import SwiftProtobuf

/// A running in-process bridge on a private Unix listener, with real Unix-socket targets that
/// each test scripts, and a real grpc-swift-2 client to talk to it.
struct BridgeHarness {
    let directory: String
    let grpcSocket: String
    let server: BridgeServer
    /// The listeners as bound (a `tcp:` port 0 resolved).
    var addresses: [ListenAddress] = []

    /// The control socket (served when the harness was started with `control: true`).
    var controlSocket: String { "\(self.directory)/control.sock" }

    /// The path for a target socket named `name` in the harness directory.
    func targetPath(_ name: String) -> String { "\(self.directory)/\(name).sock" }

    /// Starts a bridge with `routes` (name → unix socket path; use ``targetPath(_:)``), runs
    /// `body`, and shuts the bridge down again.
    static func with<T: Sendable>(
        routes: [String: String] = ["echo": "echo"],
        defaultRoute: String? = "echo",
        limits: Limits = Limits(),
        linger: TimeAmount = .seconds(5),
        targets: [String: (String) -> RouteTarget] = [:],
        logger: Logger? = nil,
        configure: (inout BridgeConfiguration, String) -> Void = { _, _ in },
        control: Bool = false,
        _ body: (BridgeHarness) async throws -> T
    ) async throws -> T {
        let directory = try makeTemporaryDirectory()
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let grpcSocket = "\(directory)/grpc.sock"
        var configuration = BridgeConfiguration(
            listeners: [ListenerConfiguration(address: .unix(path: grpcSocket))],
            defaultRoute: defaultRoute,
            limits: limits,
            linger: linger,
            control: control ? "\(directory)/control.sock" : nil
        )
        for (name, socket) in routes {
            configuration.routes[name] = RouteConfiguration(
                name: name,
                target: .unix(path: "\(directory)/\(socket).sock")
            )
        }
        for (name, target) in targets {
            configuration.routes[name] = RouteConfiguration(name: name, target: target(directory))
        }
        configure(&configuration, directory)
        var logger = logger ?? Logger(label: "jmp-bridge-test")
        if logger.logLevel != .trace {
            logger.logLevel = ProcessInfo.processInfo.environment["JMP_TEST_LOG"] != nil ? .debug : .critical
        }
        let server = BridgeServer(configuration: configuration, graceTime: .seconds(1), logger: logger)
        let addresses = try await server.start()
        let harness = BridgeHarness(directory: directory, grpcSocket: grpcSocket, server: server, addresses: addresses)
        do {
            let result = try await body(harness)
            try await server.shutdown()
            return result
        } catch {
            try? await server.shutdown()
            throw error
        }
    }

    /// Runs `body` with a grpc-swift-2 client connected to the bridge's Unix listener.
    func withClient<T: Sendable>(
        windowSize: Int? = nil,
        socket: String? = nil,
        _ body: @Sendable (GRPCClient<HTTP2ClientTransport.Posix>) async throws -> T
    ) async throws -> T {
        var config = HTTP2ClientTransport.Posix.Config.defaults
        if let windowSize { config.http2.targetWindowSize = windowSize }
        let transport = try HTTP2ClientTransport.Posix(
            target: .unixDomainSocket(path: socket ?? self.grpcSocket),
            transportSecurity: .plaintext,
            config: config
        )
        return try await withGRPCClient(transport: transport) { client in
            try await body(client)
        }
    }
}

func makeTemporaryDirectory() throws -> String {
    var template = Array("/tmp/jmpb-XXXXXX".utf8CString)
    guard let pointer = mkdtemp(&template) else { throw POSIXError(.EIO) }
    return String(cString: pointer)
}

// MARK: - The router protocol through the reference (swift-protobuf) codec

/// Raw protobuf bytes as the gRPC message type, so tests can send anything (even malformed
/// messages) and decode responses with swift-protobuf, the reference codec.
struct RawMessageSerializer: MessageSerializer, MessageDeserializer {
    func serialize<Bytes: GRPCContiguousBytes>(_ message: [UInt8]) throws -> Bytes { Bytes(message) }
    func deserialize<Bytes: GRPCContiguousBytes>(_ serializedMessageBytes: Bytes) throws -> [UInt8] {
        serializedMessageBytes.withUnsafeBytes { Array($0) }
    }
}

enum Router {
    static let stream = MethodDescriptor(fullyQualifiedService: "jumpstarter.v1.RouterService", method: "Stream")

    static func data(_ bytes: [UInt8]) -> [UInt8] {
        var request = Jumpstarter_V1_StreamRequest()
        request.payload = Data(bytes)
        return (try? request.serializedBytes()) ?? []
    }

    static func frame(_ type: Jumpstarter_V1_FrameType) -> [UInt8] {
        var request = Jumpstarter_V1_StreamRequest()
        request.frameType = type
        return (try? request.serializedBytes()) ?? []
    }

    static func decode(_ bytes: [UInt8]) throws -> Jumpstarter_V1_StreamResponse {
        try Jumpstarter_V1_StreamResponse(serializedBytes: bytes)
    }

    /// What a stream delivered: payload bytes, whether GOAWAY came, and any frames after it.
    struct Received: Sendable {
        var bytes: [UInt8] = []
        var goaway = false
        var dataAfterGoaway = false
    }

    /// Runs one Stream call and returns as soon as what was received satisfies `until` (which
    /// cancels the call), or when the call ends.
    static func call(
        _ client: GRPCClient<HTTP2ClientTransport.Posix>,
        metadata: Metadata = [:],
        producer: @escaping @Sendable (RPCWriter<[UInt8]>) async throws -> Void,
        until: @escaping @Sendable (Received) -> Bool
    ) async throws -> Received {
        try await Self.call(client, metadata: metadata, until: until, producer: producer)
    }

    /// Runs one Stream call: `producer` writes requests (the client half-closes when it
    /// returns); the responses are collected until the call ends, or until `until` is satisfied
    /// (which cancels the call). Throws the RPCError of a non-OK status.
    static func call(
        _ client: GRPCClient<HTTP2ClientTransport.Posix>,
        metadata: Metadata = [:],
        options: CallOptions = .defaults,
        responseEnded: Signal? = nil,
        until: (@Sendable (Received) -> Bool)? = nil,
        producer: @escaping @Sendable (RPCWriter<[UInt8]>) async throws -> Void
    ) async throws -> Received {
        try await client.bidirectionalStreaming(
            request: StreamingClientRequest(metadata: metadata, producer: producer),
            descriptor: Self.stream,
            serializer: RawMessageSerializer(),
            deserializer: RawMessageSerializer(),
            options: options
        ) { response in
            // grpc-swift returns only once the producer has returned too: producers that wait
            // for the response to end wait for this.
            defer { responseEnded?.fire() }
            var received = Received()
            for try await message in response.messages {
                let frame = try Self.decode(message)
                switch frame.frameType {
                case .data:
                    if received.goaway && !frame.payload.isEmpty { received.dataAfterGoaway = true }
                    received.bytes += frame.payload
                case .goaway:
                    received.goaway = true
                default:
                    break
                }
                if let until, until(received) { break }
            }
            return received
        }
    }
}

// MARK: - Scriptable Unix-socket targets

/// A Unix-socket server standing in for an exporter: every accepted connection is handed to
/// `handler` as an async channel with half-close enabled both ways.
struct TargetServer {
    let channel: NIOAsyncChannel<NIOAsyncChannel<ByteBuffer, ByteBuffer>, Never>

    static func run<T: Sendable>(
        at path: String,
        handler: @escaping @Sendable (NIOAsyncChannel<ByteBuffer, ByteBuffer>) async throws -> Void,
        _ body: () async throws -> T
    ) async throws -> T {
        let server = try await ServerBootstrap(group: MultiThreadedEventLoopGroup.singleton)
            .childChannelOption(.allowRemoteHalfClosure, value: true)
            .bind(unixDomainSocketPath: path, cleanupExistingSocketFile: true) { channel in
                channel.eventLoop.makeCompletedFuture {
                    try NIOAsyncChannel<ByteBuffer, ByteBuffer>(
                        wrappingChannelSynchronously: channel,
                        configuration: .init(isOutboundHalfClosureEnabled: true)
                    )
                }
            }
        return try await withThrowingTaskGroup(of: Void.self) { group in
            group.addTask {
                try await withThrowingDiscardingTaskGroup { connections in
                    try await server.executeThenClose { inbound in
                        for try await connection in inbound {
                            connections.addTask { try? await handler(connection) }
                        }
                    }
                }
            }
            defer { group.cancelAll() }
            let result = try await body()
            try? await server.channel.close()
            return result
        }
    }

    /// Echoes everything; on EOF from the bridge, closes its write side.
    static let echo: @Sendable (NIOAsyncChannel<ByteBuffer, ByteBuffer>) async throws -> Void = { connection in
        try await connection.executeThenClose { inbound, _ in
            for try await buffer in inbound {
                try await send(connection, buffer)
            }
            try await halfClose(connection)
        }
    }

    /// Reads and discards everything; never answers.
    static let sink: @Sendable (NIOAsyncChannel<ByteBuffer, ByteBuffer>) async throws -> Void = { connection in
        try await connection.executeThenClose { inbound, _ in for try await _ in inbound {} }
    }

    /// Writes and waits until the bytes are in the socket. (NIOAsyncChannel's writer only queues,
    /// and NIO drops queued writes when a half-closed socket is closed the other way too.)
    static func send(_ connection: NIOAsyncChannel<ByteBuffer, ByteBuffer>, _ buffer: ByteBuffer) async throws {
        try await connection.channel.writeAndFlush(buffer)
    }

    /// `shutdown(SHUT_WR)`, after everything sent with ``send(_:_:)``.
    static func halfClose(_ connection: NIOAsyncChannel<ByteBuffer, ByteBuffer>) async throws {
        try await connection.channel.close(mode: .output)
    }
}
