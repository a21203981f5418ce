import Foundation
import GRPCCore
import GRPCNIOTransportHTTP2
import JMPBridgeCore
import NIOCore
import Testing

/// TLS listeners: clear start-up errors, mutual TLS with a client CA, and reloading the
/// certificate for new connections while established streams go on.
@Suite("TLS", .serialized, .timeLimit(.minutes(2)))
struct BridgeTLSTests {
    /// Two CAs, a server certificate from each, and a client certificate from the first, made
    /// with the openssl command line.
    struct PKI {
        let directory: String
        func path(_ name: String) -> String { "\(self.directory)/\(name)" }

        static func make() throws -> PKI {
            let directory = try makeTemporaryDirectory()
            let script = """
                set -e
                cd '\(directory)'
                key() { openssl req -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -subj "/CN=$2" -keyout "$1.key" -out "$1.csr" 2>/dev/null; }
                printf 'subjectAltName=IP:127.0.0.1,DNS:localhost\\n' > san.ext
                for ca in ca1 ca2; do
                  openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 30 -subj "/CN=$ca" -keyout $ca.key -out $ca.crt 2>/dev/null
                done
                key server1 localhost; openssl x509 -req -in server1.csr -CA ca1.crt -CAkey ca1.key -CAcreateserial -days 30 -extfile san.ext -out server1.crt 2>/dev/null
                key server2 localhost; openssl x509 -req -in server2.csr -CA ca2.crt -CAkey ca2.key -CAcreateserial -days 30 -extfile san.ext -out server2.crt 2>/dev/null
                key client client; openssl x509 -req -in client.csr -CA ca1.crt -CAkey ca1.key -CAcreateserial -days 30 -out client.crt 2>/dev/null
                """
            let process = Process()
            process.executableURL = URL(fileURLWithPath: "/bin/bash")
            process.arguments = ["-c", script]
            try process.run()
            process.waitUntilExit()
            guard process.terminationStatus == 0 else { throw POSIXError(.EIO) }
            return PKI(directory: directory)
        }

        func copy(_ name: String, to destination: String) throws {
            let data = try Data(contentsOf: URL(fileURLWithPath: self.path(name)))
            try data.write(to: URL(fileURLWithPath: destination))
        }
    }

    private static func port(_ bridge: BridgeHarness) -> Int {
        for address in bridge.addresses {
            if case .tcp(_, let port) = address { return port }
        }
        return 0
    }

    /// One echo call over a TLS connection trusting `ca`, optionally with a client certificate.
    private static func echo(
        _ bridge: BridgeHarness,
        trusting ca: String,
        client: (cert: String, key: String)? = nil,
        _ bytes: [UInt8] = [1, 2, 3]
    ) async throws -> [UInt8] {
        let transport = try HTTP2ClientTransport.Posix(
            target: .ipv4(address: "127.0.0.1", port: Self.port(bridge)),
            transportSecurity: .tls { config in
                config.trustRoots = .certificates([.file(path: ca, format: .pem)])
                config.serverCertificateVerification = .noHostnameVerification
                if let client {
                    config.certificateChain = [.file(path: client.cert, format: .pem)]
                    config.privateKey = .file(path: client.key, format: .pem)
                }
            }
        )
        return try await withGRPCClient(transport: transport) { client in
            try await Router.call(client) { writer in try await writer.write(Router.data(bytes)) }.bytes
        }
    }

    private static func tlsListener(_ pki: PKI, clientCA: String? = nil) -> ListenerConfiguration {
        var files = TLSFiles(certificate: pki.path("live.crt"), key: pki.path("live.key"))
        files.clientCA = clientCA
        var listener = ListenerConfiguration(address: .tcp(host: "127.0.0.1", port: 0), tls: files)
        listener.allowUnauthenticated = true
        return listener
    }

    @Test("a key that does not fit the certificate, or a missing file, stops the start with a clear error")
    func startupErrors() async throws {
        let pki = try PKI.make()
        defer { try? FileManager.default.removeItem(atPath: pki.directory) }
        try pki.copy("server1.crt", to: pki.path("live.crt"))
        try pki.copy("server2.key", to: pki.path("live.key"))
        for (expected, prepare) in [
            ("does not fit", {}),
            ("cannot load TLS certificate", { try FileManager.default.removeItem(atPath: pki.path("live.crt")) }),
        ] as [(String, () throws -> Void)] {
            try prepare()
            let configuration = BridgeConfiguration(listeners: [Self.tlsListener(pki)])
            let server = BridgeServer(configuration: configuration, logger: .init(label: "test"))
            do {
                try await server.start()
                try await server.shutdown()
                Issue.record("the bridge started with broken TLS files")
            } catch let error as BridgeError {
                #expect(error.description.contains(expected), "\(error)")
            }
        }
    }

    @Test(
        "reloadTLS serves the new certificate to new connections; open streams go on; a broken reload changes nothing"
    )
    func reload() async throws {
        let pki = try PKI.make()
        defer { try? FileManager.default.removeItem(atPath: pki.directory) }
        try pki.copy("server1.crt", to: pki.path("live.crt"))
        try pki.copy("server1.key", to: pki.path("live.key"))
        try await BridgeHarness.with(configure: { configuration, _ in
            configuration.listeners.append(Self.tlsListener(pki))
        }) { bridge in
            try await TargetServer.run(at: bridge.targetPath("echo"), handler: TargetServer.echo) {
                #expect(try await Self.echo(bridge, trusting: pki.path("ca1.crt")) == [1, 2, 3])
                // A stream on the old certificate stays open across the reload.
                let transport = try HTTP2ClientTransport.Posix(
                    target: .ipv4(address: "127.0.0.1", port: Self.port(bridge)),
                    transportSecurity: .tls { config in
                        config.trustRoots = .certificates([.file(path: pki.path("ca1.crt"), format: .pem)])
                        config.serverCertificateVerification = .noHostnameVerification
                    }
                )
                let reloaded = Signal()
                try await withGRPCClient(transport: transport) { client in
                    async let open = Router.call(client) { writer in
                        try await writer.write(Router.data([1]))
                        await reloaded.wait()
                        try await writer.write(Router.data([2]))
                    }
                    // Connected (and past the handshake) once the bridge counts the stream.
                    try await eventually("the stream to open", within: 10) {
                        bridge.server.statistics.activeStreams.load(ordering: .relaxed) >= 1
                    }
                    try pki.copy("server2.crt", to: pki.path("live.crt"))
                    try pki.copy("server2.key", to: pki.path("live.key"))
                    #expect(try bridge.server.reloadTLS() == 1)
                    reloaded.fire()
                    #expect(try await open.bytes == [1, 2])
                }
                #expect(try await Self.echo(bridge, trusting: pki.path("ca2.crt")) == [1, 2, 3])
                await #expect(throws: (any Error).self) {
                    _ = try await Self.echo(bridge, trusting: pki.path("ca1.crt"))
                }
                // A broken key: the reload fails and the working certificate stays.
                try Data("not a key".utf8).write(to: URL(fileURLWithPath: pki.path("live.key")))
                #expect(throws: BridgeError.self) { try bridge.server.reloadTLS() }
                #expect(try await Self.echo(bridge, trusting: pki.path("ca2.crt")) == [1, 2, 3])
            }
        }
    }

    @Test("with a client CA, a client without a certificate is refused and one with a certificate from it is served")
    func mutualTLS() async throws {
        let pki = try PKI.make()
        defer { try? FileManager.default.removeItem(atPath: pki.directory) }
        try pki.copy("server1.crt", to: pki.path("live.crt"))
        try pki.copy("server1.key", to: pki.path("live.key"))
        try await BridgeHarness.with(configure: { configuration, _ in
            configuration.listeners.append(Self.tlsListener(pki, clientCA: pki.path("ca1.crt")))
        }) { bridge in
            try await TargetServer.run(at: bridge.targetPath("echo"), handler: TargetServer.echo) {
                await #expect(throws: (any Error).self) {
                    _ = try await Self.echo(bridge, trusting: pki.path("ca1.crt"))
                }
                let client = (cert: pki.path("client.crt"), key: pki.path("client.key"))
                let echoed = try await Self.echo(bridge, trusting: pki.path("ca1.crt"), client: client)
                #expect(echoed == [1, 2, 3])
            }
        }
    }
}
