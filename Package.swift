// swift-tools-version:6.0
import PackageDescription

let package = Package(
    name: "jmp-bridge",
    platforms: [.macOS(.v15)],
    products: [
        .executable(name: "jmp-bridge", targets: ["jmp-bridge"])
    ],
    dependencies: [
        .package(url: "https://github.com/apple/swift-nio.git", from: "2.101.2"),
        .package(url: "https://github.com/apple/swift-nio-http2.git", from: "1.46.0"),
        .package(url: "https://github.com/apple/swift-nio-ssl.git", from: "2.37.6"),
        .package(url: "https://github.com/apple/swift-nio-extras.git", from: "1.35.2"),
        .package(url: "https://github.com/apple/swift-protobuf.git", from: "1.39.0"),
        .package(url: "https://github.com/apple/swift-argument-parser.git", from: "1.8.2"),
        .package(url: "https://github.com/apple/swift-log.git", from: "1.16.2"),
        .package(url: "https://github.com/swift-server/swift-service-lifecycle.git", from: "2.13.0"),
        .package(url: "https://github.com/jpsim/Yams.git", from: "6.2.2"),
        .package(url: "https://github.com/vapor/jwt-kit.git", from: "5.2.0"),
        .package(url: "https://github.com/apple/swift-metrics.git", from: "2.13.0"),
        .package(url: "https://github.com/swift-server/swift-prometheus.git", from: "2.4.1"),
        // Test peers only.
        .package(url: "https://github.com/grpc/grpc-swift-2.git", from: "2.4.3"),
        .package(url: "https://github.com/grpc/grpc-swift-nio-transport.git", from: "2.9.2"),
    ],
    targets: [
        // Wire format: the jumpstarter.v1 router protocol, gRPC framing and status codes.
        .target(
            name: "JMPProtocol",
            dependencies: [
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOHPACK", package: "swift-nio-http2"),
                .product(name: "NIOHTTP2", package: "swift-nio-http2"),
                .product(name: "Logging", package: "swift-log"),
            ]
        ),
        // The swift-protobuf types generated from proto/ (scripts/generate-protos): the reference
        // the hand-written codec is tested against. Tests only: the bridge does not link them.
        .target(
            name: "JMPProtocolReference",
            dependencies: [
                .product(name: "SwiftProtobuf", package: "swift-protobuf"),
            ]
        ),
        // C wrappers for system interfaces Swift cannot call directly (ioctl, pty functions, mallopt).
        .target(name: "CJMPSystem"),
        // libsystemd (sd-daemon), the system's own library, found through pkg-config.
        .systemLibrary(name: "CSystemd", pkgConfig: "libsystemd", providers: [.apt(["libsystemd-dev"])]),
        // Talking to the service manager: passed sockets, sd_notify, watchdog, journal logs.
        .target(
            name: "JMPSystemd",
            dependencies: [
                "CSystemd",
                .product(name: "Logging", package: "swift-log"),
            ]
        ),
        // Local endpoints a routed stream is bridged to.
        .target(
            name: "JMPTargets",
            dependencies: [
                "CJMPSystem",
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "Logging", package: "swift-log"),
            ]
        ),
        // Local doors: raw Unix-socket connections relayed to a route's target with splice(2).
        .target(
            name: "JMPDoors",
            dependencies: [
                "CJMPSystem",
                .product(name: "Logging", package: "swift-log"),
            ]
        ),
        // TLS as the operator sees it: certificates' dates, failed handshakes, unreadable PEM files.
        .target(
            name: "JMPTLS",
            dependencies: [
                .product(name: "NIOSSL", package: "swift-nio-ssl")
            ]
        ),
        // The exporter gateway: the controller proxy, Listen rewriting and the router relay over
        // pooled upstream HTTP/2 connections.
        .target(
            name: "JMPGateway",
            dependencies: [
                "JMPProtocol",
                "JMPTLS",
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "NIOTLS", package: "swift-nio"),
                .product(name: "NIOHTTP2", package: "swift-nio-http2"),
                .product(name: "NIOSSL", package: "swift-nio-ssl"),
                .product(name: "Logging", package: "swift-log"),
            ]
        ),
        // The Prometheus metrics: the registry and its names, process metrics, the HTTP endpoint.
        .target(
            name: "JMPMetrics",
            dependencies: [
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "NIOHTTP1", package: "swift-nio"),
                .product(name: "Prometheus", package: "swift-prometheus"),
                .product(name: "CoreMetrics", package: "swift-metrics"),
            ]
        ),
        // Configuration, listeners, the HTTP/2 server and the per-stream bridge.
        .target(
            name: "JMPBridgeCore",
            dependencies: [
                "CJMPSystem",
                "JMPGateway",
                "JMPProtocol",
                "JMPTLS",
                "JMPTargets",
                "JMPSystemd",
                "JMPDoors",
                "JMPMetrics",
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "NIOHTTP1", package: "swift-nio"),
                .product(name: "NIOHTTP2", package: "swift-nio-http2"),
                .product(name: "NIOSSL", package: "swift-nio-ssl"),
                .product(name: "NIOExtras", package: "swift-nio-extras"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
                .product(name: "Yams", package: "Yams"),
                .product(name: "JWTKit", package: "jwt-kit"),
            ]
        ),
        // The command line.
        .executableTarget(
            name: "jmp-bridge",
            dependencies: [
                "CJMPSystem",
                "JMPBridgeCore",
                "JMPSystemd",
                "JMPMetrics",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
                .product(name: "CoreMetrics", package: "swift-metrics"),
                .product(name: "Prometheus", package: "swift-prometheus"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
                .product(name: "UnixSignals", package: "swift-service-lifecycle"),
            ]
        ),
        .testTarget(
            name: "JMPProtocolTests",
            dependencies: [
                "JMPProtocol",
                "JMPProtocolReference",
                .product(name: "SwiftProtobuf", package: "swift-protobuf"),
            ]
        ),
        .testTarget(
            name: "JMPSystemdTests",
            dependencies: [
                "JMPSystemd",
                .product(name: "Logging", package: "swift-log"),
            ]
        ),
        .testTarget(
            name: "JMPBridgeCoreTests",
            dependencies: [
                "CJMPSystem",
                "JMPBridgeCore",
                "JMPDoors",
                "JMPGateway",
                "JMPProtocol",
                "JMPProtocolReference",
                "JMPSystemd",
                "JMPTLS",
                "JMPTargets",
                "JMPMetrics",
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "NIOEmbedded", package: "swift-nio"),
                .product(name: "NIOHPACK", package: "swift-nio-http2"),
                .product(name: "NIOHTTP2", package: "swift-nio-http2"),
                .product(name: "GRPCCore", package: "grpc-swift-2"),
                .product(name: "GRPCNIOTransportHTTP2", package: "grpc-swift-nio-transport"),
                .product(name: "SwiftProtobuf", package: "swift-protobuf"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "NIOConcurrencyHelpers", package: "swift-nio"),
                .product(name: "JWTKit", package: "jwt-kit"),
            ]
        ),
    ],
    swiftLanguageModes: [.v6]
)
