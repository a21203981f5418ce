import Foundation
import GRPCCore
import JMPBridgeCore
import Testing

/// The control socket: local attachments to a console next to gRPC ones, and `status`.
@Suite("Control socket", .serialized, .timeLimit(.minutes(2)))
struct ConsoleControlTests {
    @Test("a local attachment gets the scrollback and the live output, its input reaches the device, EOF detaches")
    func localAttach() async throws {
        try await BridgeHarness.with(
            targets: ["console": { BridgeConsoleTests.console("\($0)/console") }],
            control: true
        ) { bridge in
            let device = try TestTTY(path: "\(bridge.directory)/console")
            try device.write(Array("boot\r\n".utf8))
            let local = try ControlConnection(path: bridge.controlSocket)
            #expect(try await local.request("attach console") == "ok")
            #expect(String(decoding: try await local.read(count: 6), as: UTF8.self) == "boot\r\n")
            try local.write(Array("ls\r".utf8))
            #expect(String(decoding: try await device.read(timeout: 10), as: UTF8.self) == "ls\r")
            try device.write(Array("$ ".utf8))
            #expect(String(decoding: try await local.read(count: 2), as: UTF8.self) == "$ ")

            let status = try await ControlConnection.status(bridge.controlSocket)
            let line = status.first { $0.hasPrefix("route=console ") } ?? ""
            #expect(line.contains("type=pty"), "\(line)")
            #expect(line.contains("state=up"), "\(line)")
            #expect(line.contains("attachments=1"), "\(line)")
            #expect(line.contains("output-bytes=8"), "\(line)")
            #expect(line.contains("input-bytes=3"), "\(line)")
            #expect(status.first?.hasPrefix("bridge=jmp-bridge ") == true, "\(status)")
            #expect(status.contains { $0.hasPrefix("route=echo type=unix ") }, "\(status)")

            // A read-only local attachment watches; its keys go nowhere.
            let watcher = try ControlConnection(path: bridge.controlSocket)
            #expect(try await watcher.request("attach console ro") == "ok")
            #expect(String(decoding: try await watcher.read(count: 8), as: UTF8.self) == "boot\r\n$ ")
            try watcher.write(Array("reboot\r".utf8))

            // End-of-file detaches: the bridge closes its side.
            shutdown(local.fd, Int32(SHUT_WR))
            #expect(try await local.readToEnd().isEmpty)
            #expect(try await device.read(timeout: 0.3).isEmpty, "input from a read-only attachment reached the device")
        }
    }

    @Test("status names every bound listener by its real address, with the configured one beside it")
    func statusListeners() async throws {
        try await BridgeHarness.with(
            configure: { configuration, _ in
                var tcp = ListenerConfiguration(address: .tcp(host: "127.0.0.1", port: 0), insecure: true)
                tcp.allowUnauthenticated = true
                configuration.listeners.append(tcp)
            },
            control: true
        ) { bridge in
            guard case .tcp(_, let port) = bridge.addresses.last else {
                Issue.record("no tcp listener bound: \(bridge.addresses)")
                return
            }
            #expect(port != 0)
            let status = try await ControlConnection.status(bridge.controlSocket)
            // start() has bound everything, but only run() reports readiness.
            #expect(status.first?.hasPrefix("bridge=jmp-bridge state=starting ") == true, "\(status)")
            let listeners = status.filter { $0.hasPrefix("listener=") }
            #expect(
                listeners == [
                    "listener=unix:\(bridge.grpcSocket) configured=unix:\(bridge.grpcSocket) tls=off auth=none",
                    "listener=tcp:127.0.0.1:\(port) configured=tcp:127.0.0.1:0 tls=off auth=none",
                ],
                "\(status)"
            )
            // Listener lines come between the bridge line and the route lines.
            #expect(status.firstIndex { $0.hasPrefix("route=") } == 3, "\(status)")
        }
    }

    @Test("local attaches count towards max-attachments, and their places come back when they close")
    func maxAttachments() async throws {
        try await BridgeHarness.with(
            targets: [
                "console": { directory in
                    var pty = PtyConfiguration(link: "\(directory)/console")
                    pty.maxAttachments = 1
                    return .pty(pty)
                }
            ],
            control: true
        ) { bridge in
            let first = try ControlConnection(path: bridge.controlSocket)
            #expect(try await first.request("attach console") == "ok")
            let second = try ControlConnection(path: bridge.controlSocket)
            let refused = try await second.request("attach console ro")
            #expect(refused.hasPrefix("error route 'console': 1 attachments already (max-attachments)"), "\(refused)")
            // A gRPC stream is refused as well while the local attach holds the place.
            try await bridge.withClient { client in
                do {
                    _ = try await Router.call(client, metadata: ["jmp-route": "console"]) { _ in }
                    Issue.record("a stream was attached beyond max-attachments")
                } catch let error as RPCError {
                    #expect(error.code == .resourceExhausted, "\(error)")
                }
            }
            shutdown(first.fd, Int32(SHUT_WR))
            #expect(try await first.readToEnd().isEmpty)
            // The bridge frees the place when it sees the connection close: poll until it has.
            var answer = ""
            for _ in 0..<500 where answer != "ok" {
                answer = try await ControlConnection(path: bridge.controlSocket).request("attach console")
                if answer != "ok" { try await Task.sleep(for: .milliseconds(20)) }
            }
            #expect(answer == "ok", "the place did not come back: \(answer)")
        }
    }

    @Test("bad requests get an error line naming the problem")
    func errors() async throws {
        try await BridgeHarness.with(
            targets: ["console": { BridgeConsoleTests.console("\($0)/console") }],
            control: true
        ) { bridge in
            let cases = [
                ("attach nosuch", "error unknown route 'nosuch'"),
                ("attach echo", "error route 'echo' is not a console (it is unix:"),
                ("attach console rx", "error attach mode must be rw or ro, not 'rx'"),
                ("dial console", "error unknown request 'dial console'"),
            ]
            for (request, reply) in cases {
                let connection = try ControlConnection(path: bridge.controlSocket)
                let answer = try await connection.request(request)
                #expect(answer.hasPrefix(reply), "\(request) → \(answer)")
                #expect(try await connection.readToEnd().isEmpty)
            }
        }
    }

    @Test("a stalled reader is cut at the lag limit while two streams get every byte without waiting for it")
    func stalledReaderIsCut() async throws {
        let lagLimit = 64 * 1024
        try await BridgeHarness.with(
            targets: ["console": { BridgeConsoleTests.console("\($0)/console", lagLimit: lagLimit) }],
            control: true
        ) { bridge in
            let device = try TestTTY(path: "\(bridge.directory)/console")
            // Attached, and then never read from again.
            let stalled = try ControlConnection(path: bridge.controlSocket)
            #expect(try await stalled.request("attach console ro") == "ok")
            try await bridge.withClient { client in
                let healthy = [ByteProgress(), ByteProgress()]
                try await withThrowingTaskGroup(of: Void.self) { group in
                    for progress in healthy {
                        group.addTask {
                            _ = try await Router.call(client, metadata: ["jmp-route": "console", "jmp-attach": "ro"]) {
                                _ in
                                try await Task.sleep(for: .seconds(3600))
                            } until: { received in
                                progress.set(received.bytes)
                                return false
                            }
                        }
                    }
                    // Output is driven chunk by chunk, each one only after both healthy streams
                    // got the one before: they never wait for the stalled reader, which must be
                    // cut once its unread output passes the lag limit (plus the socket buffers).
                    var sent: [UInt8] = []
                    var seed: UInt64 = 1
                    while !stalled.peerClosed {
                        guard sent.count < 64 << 20 else {
                            Issue.record("the stalled reader was never cut")
                            break
                        }
                        let chunk = pseudoRandomBytes(count: 16 * 1024, seed: seed)
                        seed += 1
                        try await blocking { try device.write(chunk) }
                        sent += chunk
                        for progress in healthy where await !progress.wait(for: sent.count) {
                            throw TimedOut(what: "a healthy stream: \(progress.bytes.count) of \(sent.count) bytes")
                        }
                    }
                    // The console goes on for the others after the cut.
                    let after = Array("after the cut".utf8)
                    try device.write(after)
                    sent += after
                    for progress in healthy where await !progress.wait(for: sent.count) {
                        throw TimedOut(
                            what: "a healthy stream after the cut: \(progress.bytes.count) of \(sent.count) bytes"
                        )
                    }
                    for progress in healthy { #expect(progress.bytes == sent) }
                    let line = try await ControlConnection.status(bridge.controlSocket).first {
                        $0.hasPrefix("route=console ")
                    }
                    #expect(line?.contains("attachments=2") == true, "\(line ?? "no status line")")
                    #expect(line?.contains("cuts=1") == true, "\(line ?? "no status line")")
                    group.cancelAll()
                }
            }
            // What the stalled reader did get is a prefix of the output, then the bridge closed.
            let got = try await stalled.readToEnd()
            #expect(got.count >= lagLimit)
        }
    }
}
