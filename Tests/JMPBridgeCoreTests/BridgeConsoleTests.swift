import Foundation
import GRPCCore
import GRPCNIOTransportHTTP2
import JMPBridgeCore
import NIOCore
import Testing

/// `pty:` routes with a real pty: an "exporter" opens the link like any console program would.
@Suite("Console routes", .serialized, .timeLimit(.minutes(2)))
struct BridgeConsoleTests {
    static func console(_ link: String, lagLimit: Int = 1 << 20, scrollback: Int = 64 * 1024) -> RouteTarget {
        var pty = PtyConfiguration(link: link)
        pty.lagLimit = lagLimit
        pty.scrollback = scrollback
        return .pty(pty)
    }

    @Test("three attachments get the scrollback and identical output, and each one's input reaches the device")
    func multiAttach() async throws {
        try await BridgeHarness.with(targets: ["console": { Self.console("\($0)/console") }]) { bridge in
            let device = try TestTTY(path: "\(bridge.directory)/console")
            try device.write(Array("boot: U-Boot 2024.01\r\n".utf8))
            let outputs = try await bridge.withClient { client in
                try await withThrowingTaskGroup(of: [UInt8].self) { group in
                    let attached = (0..<3).map { _ in Signal() }
                    for index in 0..<3 {
                        group.addTask {
                            try await Router.call(client, metadata: ["jmp-route": "console"]) { writer in
                                try await writer.write(Router.data(Array("key\(index);".utf8)))
                                attached[index].fire()
                                try await Task.sleep(for: .seconds(3600))
                            } until: { received in
                                received.bytes.count >= "boot: U-Boot 2024.01\r\nlogin: ".utf8.count
                            }.bytes
                        }
                    }
                    for signal in attached { await signal.wait() }
                    // Every attachment's input arrives at the device (in some order).
                    var typed = ""
                    while typed.count < "key0;key1;key2;".count {
                        typed += String(decoding: try await device.read(timeout: 10), as: UTF8.self)
                    }
                    #expect(Set(typed.split(separator: ";")) == ["key0", "key1", "key2"])
                    try device.write(Array("login: ".utf8))
                    var outputs: [[UInt8]] = []
                    for try await output in group { outputs.append(output) }
                    return outputs
                }
            }
            for output in outputs {
                #expect(String(decoding: output, as: UTF8.self) == "boot: U-Boot 2024.01\r\nlogin: ")
            }
        }
    }

    @Test("a read-only attachment sees the output and may not type")
    func readOnly() async throws {
        try await BridgeHarness.with(targets: ["console": { Self.console("\($0)/console") }]) { bridge in
            let device = try TestTTY(path: "\(bridge.directory)/console")
            try device.write(Array("hello".utf8))
            try await bridge.withClient { client in
                let received = try await Router.call(client, metadata: ["jmp-route": "console", "jmp-attach": "ro"]) {
                    _ in
                    try await Task.sleep(for: .seconds(3600))
                } until: {
                    $0.bytes.count >= 5
                }
                #expect(String(decoding: received.bytes, as: UTF8.self) == "hello")
                do {
                    _ = try await Router.call(client, metadata: ["jmp-route": "console", "jmp-attach": "ro"]) {
                        writer in
                        try await writer.write(Router.data(Array("rm -rf /".utf8)))
                    }
                    Issue.record("a read-only attachment was allowed to type")
                } catch let error as RPCError {
                    #expect(error.code == .permissionDenied, "\(error)")
                }
            }
            #expect(try await device.read(timeout: 0.3).isEmpty, "input from a read-only attachment reached the device")
        }
    }

    @Test("the console survives its program closing the link and serves the next one")
    func survivesHangup() async throws {
        try await BridgeHarness.with(targets: ["console": { Self.console("\($0)/console") }]) { bridge in
            do {
                let first = try TestTTY(path: "\(bridge.directory)/console")
                try first.write(Array("first\n".utf8))
            }  // closed: nothing holds the link open now
            let second = try TestTTY(path: "\(bridge.directory)/console")
            try second.write(Array("second\n".utf8))
            try await bridge.withClient { client in
                let received = try await Router.call(client, metadata: ["jmp-route": "console"]) { writer in
                    try await writer.write(Router.data(Array("x".utf8)))
                    try await Task.sleep(for: .seconds(3600))
                } until: {
                    $0.bytes.count >= "first\nsecond\n".utf8.count
                }
                #expect(String(decoding: received.bytes, as: UTF8.self) == "first\nsecond\n")
            }
            #expect(String(decoding: try await second.read(timeout: 10), as: UTF8.self) == "x")
        }
    }
}

/// A program's end of a console: the pty slave opened through the route's link.
final class TestTTY: Sendable {
    let fd: CInt

    init(path: String) throws {
        let fd = open(path, O_RDWR | O_NOCTTY | O_CLOEXEC)
        guard fd >= 0 else { throw POSIXError(POSIXErrorCode(rawValue: errno) ?? .EIO) }
        self.fd = fd
    }

    deinit { close(self.fd) }

    func write(_ bytes: [UInt8]) throws {
        var offset = 0
        while offset < bytes.count {
            let written = bytes[offset...].withUnsafeBytes { Glibc.write(self.fd, $0.baseAddress, $0.count) }
            guard written > 0 else { throw POSIXError(POSIXErrorCode(rawValue: errno) ?? .EIO) }
            offset += written
        }
    }

    /// What is there to read within `timeout` seconds (empty if nothing came).
    /// (On ``blockingPool``: a blocked cooperative thread could starve the gRPC client.)
    func read(timeout: Double) async throws -> [UInt8] {
        let fd = self.fd
        return try await blocking { try readAvailable(fd, timeout: timeout) }
    }
}
