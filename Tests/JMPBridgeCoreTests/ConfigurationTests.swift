import Foundation
import JMPTargets
import NIOCore
import Testing

@testable import JMPBridgeCore

let file = "/etc/jmp-bridge/bridge.yaml"

/// Parses `yaml` and returns the error it must fail with.
func parseError(_ yaml: String, sourceLocation: SourceLocation = #_sourceLocation) -> ConfigurationError? {
    do throws(ConfigurationError) {
        let configuration = try ConfigurationLoader.parse(yaml: yaml, file: file)
        Issue.record("parsed without error: \(configuration)", sourceLocation: sourceLocation)
        return nil
    } catch {
        return error
    }
}

/// Checks that `yaml` fails to parse with an error at `line` (1-based, as an editor shows it)
/// naming `key`, whose message contains `message`, and that it renders as `FILE:LINE: KEY: ...`.
func expectError(
    _ yaml: String,
    line: Int?,
    key: String?,
    message: String,
    sourceLocation: SourceLocation = #_sourceLocation
) {
    guard let error = parseError(yaml, sourceLocation: sourceLocation) else { return }
    #expect(error.file == file, sourceLocation: sourceLocation)
    #expect(error.line == line, "\(error)", sourceLocation: sourceLocation)
    #expect(error.key == key, "\(error)", sourceLocation: sourceLocation)
    #expect(error.message.contains(message), "\(error)", sourceLocation: sourceLocation)
    var prefix = file
    if let line { prefix += ":\(line)" }
    prefix += ": "
    if let key { prefix += "\(key): " }
    #expect(error.description == prefix + error.message, sourceLocation: sourceLocation)
}

/// The example configuration of jmp-bridge.yaml(5), with only the route kinds this version supports.
private let fullConfiguration = """
    # jmp-bridge configuration (unix routes only)
    listen:
      - address: tcp:0.0.0.0:8083
        tls: {cert: /etc/jmp-bridge/tls.crt, key: /etc/jmp-bridge/tls.key}
        allow-unauthenticated: true
      - address: unix:/run/jmp-bridge/grpc.sock
        mode: "0660"

      - address: tcp:[::1]:8084
        insecure: true
        allow-unauthenticated: true
      - unix:/run/jmp-bridge/short.sock
    default-route: session
    routes:
      session:
        unix: /run/jumpstarter/exporter.sock
      power.ctl_2-b:
        unix: /run/jumpstarter/power.sock
    limits:
      max-message-size: 8MiB
      max-payload-size: 32KiB
      stream-window: 2MiB
      max-streams-per-connection: 100
    linger: 500ms

    """

/// `listener` with `allow-unauthenticated: true`.
private func unauthenticated(_ listener: ListenerConfiguration) -> ListenerConfiguration {
    var listener = listener
    listener.allowUnauthenticated = true
    return listener
}

@Suite("Configuration")
struct ConfigurationTests {
    // MARK: - Valid files

    @Test("a full configuration file is parsed into the expected configuration")
    func fullFile() throws {
        let configuration = try ConfigurationLoader.parse(yaml: fullConfiguration, file: file)
        var limits = Limits()
        limits.maxMessageSize = 8 << 20
        limits.maxPayloadSize = 32 << 10
        limits.streamWindow = 2 << 20
        limits.maxStreamsPerConnection = 100
        let expected = BridgeConfiguration(
            listeners: [
                unauthenticated(
                    ListenerConfiguration(
                        address: .tcp(host: "0.0.0.0", port: 8083),
                        tls: TLSFiles(certificate: "/etc/jmp-bridge/tls.crt", key: "/etc/jmp-bridge/tls.key"),
                        line: 3
                    )
                ),
                ListenerConfiguration(address: .unix(path: "/run/jmp-bridge/grpc.sock"), mode: 0o660, line: 6),
                unauthenticated(ListenerConfiguration(address: .tcp(host: "::1", port: 8084), insecure: true, line: 9)),
                ListenerConfiguration(address: .unix(path: "/run/jmp-bridge/short.sock"), line: 12),
            ],
            routes: [
                "session": RouteConfiguration(
                    name: "session",
                    target: .unix(path: "/run/jumpstarter/exporter.sock"),
                    line: 15
                ),
                "power.ctl_2-b": RouteConfiguration(
                    name: "power.ctl_2-b",
                    target: .unix(path: "/run/jumpstarter/power.sock"),
                    line: 17
                ),
            ],
            defaultRoute: "session",
            limits: limits,
            linger: .milliseconds(500),
            source: file
        )
        #expect(configuration == expected)
        try configuration.validate()
    }

    @Test("the same file with CRLF line endings gives the same configuration")
    func crlf() throws {
        let unix = try ConfigurationLoader.parse(yaml: fullConfiguration, file: file)
        let dos = try ConfigurationLoader.parse(
            yaml: fullConfiguration.replacingOccurrences(of: "\n", with: "\r\n"),
            file: file
        )
        #expect(dos == unix)
    }

    @Test("a minimal file gets the defaults")
    func minimalFile() throws {
        let configuration = try ConfigurationLoader.parse(
            yaml: """
                listen: [unix:/run/jmp-bridge/grpc.sock]
                routes: {session: {unix: /run/x.sock}}
                """,
            file: file
        )
        #expect(configuration.listeners.map(\.address) == [.unix(path: "/run/jmp-bridge/grpc.sock")])
        #expect(configuration.listeners.first?.line == 1)
        #expect(configuration.defaultRoute == nil)
        #expect(configuration.limits == Limits())
        #expect(configuration.linger == .seconds(5))
        #expect(configuration.source == file)
        #expect(Limits().maxMessageSize == 4 << 20)
        #expect(Limits().maxPayloadSize == 64 << 10)
        try configuration.validate()
    }

    @Test("an empty file parses, and then fails validation for want of a listener")
    func emptyFile() throws {
        for text in ["", "\n", "# only a comment\n"] {
            let configuration = try ConfigurationLoader.parse(yaml: text, file: file)
            #expect(configuration.listeners.isEmpty)
            #expect(configuration.routes.isEmpty)
            #expect(
                throws: ConfigurationError(
                    file: file,
                    key: "listen",
                    "no listener configured (use --listen or 'listen:', or configure 'gateway:')"
                )
            ) {
                try configuration.validate()
            }
        }
    }

    /// A file whose only document is empty (`---` followed by nothing but comments, as when every
    /// setting is commented out) is an empty configuration like an empty file, not "expected a
    /// mapping" at a line past the end of the file.
    @Test(
        "an explicitly empty YAML document is an empty configuration",
        arguments: ["---\n", "---\n# listen: []\n", "~\n"]
    )
    func emptyDocument(text: String) throws {
        let configuration = try ConfigurationLoader.parse(yaml: text, file: file)
        #expect(configuration.listeners.isEmpty)
        #expect(configuration.routes.isEmpty)
    }

    @Test("durations and sizes in their accepted spellings")
    func units() throws {
        let durations: [(String, TimeAmount)] = [
            ("5", .seconds(5)), ("5s", .seconds(5)), ("500ms", .milliseconds(500)), ("2m", .minutes(2)),
            ("2min", .minutes(2)), ("1h", .hours(1)), ("0", .seconds(0)),
        ]
        for (text, value) in durations {
            let configuration = try ConfigurationLoader.parse(yaml: "linger: \(text)\n", file: file)
            #expect(configuration.linger == value, "\(text)")
        }
        let sizes: [(String, Int)] = [
            ("65536", 65536), ("64KiB", 64 << 10), ("64K", 64 << 10), ("64kb", 64 << 10), ("1MiB", 1 << 20),
            ("1 MiB", 1 << 20), ("1M", 1 << 20), ("1024b", 1024),
        ]
        for (text, value) in sizes {
            let configuration = try ConfigurationLoader.parse(yaml: "limits: {max-payload-size: \(text)}\n", file: file)
            #expect(configuration.limits.maxPayloadSize == value, "\(text)")
        }
    }

    @Test("limits.keepalive: a PING after 2 minutes of silence by default; its interval and timeout, or off")
    func keepalive() throws {
        #expect(try ConfigurationLoader.parse(yaml: "limits: {}\n", file: file).limits.keepalive == .default)
        #expect(Keepalive.default == Keepalive(interval: .minutes(2), timeout: .seconds(20)))
        let set = try ConfigurationLoader.parse(yaml: "limits: {keepalive: 30s, keepalive-timeout: 5s}\n", file: file)
        #expect(set.limits.keepalive == Keepalive(interval: .seconds(30), timeout: .seconds(5)))
        let off = try ConfigurationLoader.parse(yaml: "limits: {keepalive: off, keepalive-timeout: 5s}\n", file: file)
        #expect(off.limits.keepalive == nil)
        expectError(
            "limits:\n  keepalive: 500ms\n",
            line: 2,
            key: "limits.keepalive",
            message: "must be at least 1s, or off"
        )
        expectError(
            "limits:\n  keepalive-timeout: 0\n",
            line: 2,
            key: "limits.keepalive-timeout",
            message: "must be at least 1s"
        )
    }

    @Test("load(path:) reads a file and names it in the configuration and in errors")
    func loadFromFile() throws {
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("jmp-config-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: directory) }
        let good = directory.appendingPathComponent("bridge.yaml").path
        try fullConfiguration.write(toFile: good, atomically: true, encoding: .utf8)
        let configuration = try ConfigurationLoader.load(path: good)
        #expect(configuration.source == good)
        #expect(configuration.routes.count == 2)

        let bad = directory.appendingPathComponent("bad.yaml").path
        try "listen:\n  - unix:/run/a.sock\nbogus: 1\n".write(toFile: bad, atomically: true, encoding: .utf8)
        #expect(throws: ConfigurationError.self) { try ConfigurationLoader.load(path: bad) }
        do throws(ConfigurationError) {
            _ = try ConfigurationLoader.load(path: bad)
        } catch {
            #expect(error.file == bad)
            #expect(error.line == 3)
            #expect(error.key == "bogus")
            #expect(error.description.hasPrefix("\(bad):3: bogus: unknown key"))
        }

        let missing = directory.appendingPathComponent("missing.yaml").path
        do throws(ConfigurationError) {
            _ = try ConfigurationLoader.load(path: missing)
            Issue.record("a missing file loaded")
        } catch {
            #expect(error.file == missing)
            #expect(error.line == nil)
            #expect(error.description.hasPrefix("\(missing): cannot read: "))
            #expect(error.description.contains("No such file or directory"), "\(error)")
        }
    }

    // MARK: - Broken files

    @Test("a YAML syntax error names its line")
    func syntaxError() {
        expectError(
            """
            listen:
              - unix:/run/a.sock
            routes:
              session:
                unix: /run/a.sock: extra
            """,
            line: 5,
            key: nil,
            message: "YAML syntax error"
        )
        // After comment and blank lines, with CRLF line endings.
        expectError(
            "# comment\r\n\r\nlisten:\r\n  - unix:/run/a.sock\r\n bad: indentation\r\n",
            line: 5,
            key: nil,
            message: "YAML syntax error"
        )
        // A tab where indentation is expected.
        expectError("listen:\n\t- unix:/run/a.sock\n", line: 2, key: nil, message: "YAML syntax error")
    }

    @Test("an unclosed flow mapping names a line no later than where the file ends")
    func unclosedFlowMapping() {
        guard
            let error = parseError(
                """
                listen:
                  - address: tcp:0.0.0.0:8083
                    tls: {cert: /a.crt, key: /a.key
                routes: {}
                """
            )
        else { return }
        #expect(error.key == nil)
        #expect(error.message.contains("YAML syntax error"))
        #expect((3...4).contains(error.line ?? 0), "\(error)")
    }

    @Test("a second document in the file is refused at its line")
    func twoDocuments() {
        expectError("listen: []\n---\nroutes: {}\n", line: 2, key: nil, message: "YAML syntax error")
    }

    @Test("an unknown top-level key")
    func unknownTopLevelKey() {
        expectError(
            """
            listen:
              - unix:/run/a.sock
            lsiten: unix:/run/jmp-bridge/other.sock
            """,
            line: 3,
            key: "lsiten",
            message:
                "unknown key (expected one of: listen, control, metrics, default-route, routes, limits, linger, exit-idle-time, jwt, gateway)"
        )
    }

    @Test("the top level must be a mapping")
    func topLevelNotMapping() {
        expectError("\n- unix:/run/a.sock\n", line: 2, key: nil, message: "expected a mapping")
    }

    @Test("an unknown listener key")
    func unknownListenerKey() {
        expectError(
            """
            listen:
              - address: unix:/run/a.sock
              - address: tcp:0.0.0.0:8083
                insecure: true
                port: 8083
            """,
            line: 5,
            key: "listen[1].port",
            message: "unknown key"
        )
        expectError(
            """
            listen:
              - address: tcp:0.0.0.0:8083
                tls: {cert: /a.crt, key: /a.key, ca: /ca.crt}
            """,
            line: 3,
            key: "listen[0].tls.ca",
            message: "unknown key"
        )
    }

    @Test("listen must be a list of listeners")
    func listenNotAList() {
        expectError("listen: unix:/run/a.sock\n", line: 1, key: "listen", message: "expected a list")
        expectError("listen:\n  - {}\n", line: 2, key: "listen[0]", message: "missing 'address'")
    }

    @Test("tcp without tls and without insecure")
    func tcpWithoutTLS() {
        expectError(
            """
            listen:
              - unix:/run/a.sock
              - address: tcp:0.0.0.0:8083
                mode: "0660"
            """,
            line: 4,
            key: "listen[1].mode",
            message: "mode applies to unix: listeners only"
        )
        expectError(
            """
            listen:
              - unix:/run/a.sock

              - address: tcp:0.0.0.0:8083
            """,
            line: 4,
            key: "listen[1]",
            message: "needs 'tls: {cert, key}' or, for plain TCP, 'insecure: true'"
        )
        expectError(
            "listen:\n  - tcp:127.0.0.1:8083\n",
            line: 2,
            key: "listen[0]",
            message: "needs 'tls: {cert, key}'"
        )
        expectError(
            "listen:\n  - address: tcp:127.0.0.1:8083\n    insecure: false\n",
            line: 2,
            key: "listen[0]",
            message: "needs 'tls: {cert, key}'"
        )
    }

    @Test("tls and insecure together")
    func tlsAndInsecure() {
        expectError(
            """
            listen:
              - address: tcp:0.0.0.0:8083
                tls: {cert: /a.crt, key: /a.key}
                insecure: true
            """,
            line: 2,
            key: "listen[0]",
            message: "contradict"
        )
    }

    @Test("incomplete tls")
    func incompleteTLS() {
        expectError(
            "listen:\n  - address: tcp:0.0.0.0:8083\n    tls: {cert: /a.crt}\n",
            line: 3,
            key: "listen[0].tls",
            message: "missing 'key'"
        )
        expectError(
            "listen:\n  - address: tcp:0.0.0.0:8083\n    tls:\n      key: /a.key\n",
            line: 4,
            key: "listen[0].tls",
            message: "missing 'cert'"
        )
        expectError(
            "listen:\n  - address: tcp:0.0.0.0:8083\n    tls: {cert: '', key: /a.key}\n",
            line: 3,
            key: "listen[0].tls.cert",
            message: "expected a non-empty string"
        )
    }

    @Test("tls on a unix listener")
    func tlsOnUnix() {
        expectError(
            """
            listen:
              - address: unix:/run/a.sock
                tls:
                  cert: /a.crt
                  key: /a.key
            """,
            line: 4,
            key: "listen[0].tls",
            message: "TLS applies to tcp: and systemd: listeners only"
        )
    }

    @Test("a bad mode")
    func badMode() {
        for mode in ["\"0999\"", "rw-rw----", "\"01777\"", "\"\""] {
            expectError(
                "listen:\n  - address: unix:/run/a.sock\n    mode: \(mode)\n",
                line: 3,
                key: "listen[0].mode",
                message: mode == "\"\"" ? "expected a non-empty string" : "is not an octal file mode"
            )
        }
    }

    @Test("max-connections per listener: 1024 by default, 1 to 65536")
    func maxConnections() throws {
        let configuration = try ConfigurationLoader.parse(
            yaml: "listen:\n  - unix:/run/a.sock\n  - {address: unix:/run/b.sock, max-connections: 3}\n",
            file: file
        )
        #expect(configuration.listeners.map(\.maxConnections) == [1024, 3])
        for bad in ["0", "65537", "many"] {
            expectError(
                "listen:\n  - address: unix:/run/a.sock\n    max-connections: \(bad)\n",
                line: 3,
                key: "listen[0].max-connections",
                message: bad == "many" ? "is not a whole number" : "is out of range 1...65536"
            )
        }
    }

    @Test("a bad address")
    func badAddress() {
        let addresses: [(String, String)] = [
            ("tcp:localhost", "expected tcp:HOST:PORT"),
            ("tcp:localhost:http", "invalid port 'http'"),
            ("tcp:0.0.0.0:65536", "invalid port '65536'"),
            ("tcp::8083", "missing host"),
            ("tcp:[::1:8083", "expected tcp:[IPV6]:PORT"),
            ("udp:0.0.0.0:8083", "unknown address 'udp:0.0.0.0:8083'"),
            ("/run/a.sock", "unknown address"),
            ("\"unix:\"", "'unix:' needs a socket path"),
            ("unix:/\(String(repeating: "x", count: 120))", "longer than 107 bytes"),
            ("\"systemd:\"", "needs the socket's FileDescriptorName="),
            ("\"systemd:a:b\"", "no ':'"),
        ]
        for (address, message) in addresses {
            expectError(
                "# listeners\nlisten:\n  - address: \(address)\n    insecure: true\n",
                line: 3,
                key: "listen[0].address",
                message: message
            )
            // The short form names the same key, at the item's line.
            expectError(
                "# listeners\nlisten:\n  - unix:/run/ok.sock\n  - \(address)\n",
                line: 4,
                key: "listen[1].address",
                message: message
            )
        }
    }

    @Test("systemd: listeners, with TLS or insecure, and exit-idle-time")
    func systemdListeners() throws {
        let configuration = try ConfigurationLoader.parse(
            yaml: """
                listen:
                  - systemd:grpc
                  - address: systemd:grpc-tls
                    tls: {cert: /a.crt, key: /a.key}
                  - address: systemd:plain
                    insecure: true
                exit-idle-time: 90s
                """,
            file: file
        )
        #expect(
            configuration.listeners.map(\.address) == [
                .systemd(name: "grpc"), .systemd(name: "grpc-tls"), .systemd(name: "plain"),
            ]
        )
        #expect(configuration.listeners[1].tls == TLSFiles(certificate: "/a.crt", key: "/a.key"))
        #expect(configuration.listeners[2].insecure)
        #expect(configuration.exitIdleTime == .seconds(90))
        #expect(ListenAddress.systemd(name: "grpc").description == "systemd:grpc")
        expectError(
            "listen:\n  - address: systemd:grpc\n    mode: \"0660\"\n",
            line: 3,
            key: "listen[0].mode",
            message: "set SocketMode= in the unit"
        )
        expectError("exit-idle-time: soon\n", line: 1, key: "exit-idle-time", message: "is not a duration")
    }

    @Test("local doors: short and long form, and their errors")
    func localDoors() throws {
        let configuration = try ConfigurationLoader.parse(
            yaml: """
                routes:
                  a: {unix: /run/a.sock, local: unix:/run/a.door}
                  b:
                    unix: /run/b.sock
                    local: {address: systemd:b-door, splice: false}
                  c:
                    local: {address: unix:/run/c.door, mode: "0660"}
                    unix: /run/c.sock
                """,
            file: file
        )
        #expect(configuration.routes["a"]?.local == LocalDoorConfiguration(address: .unix(path: "/run/a.door")))
        #expect(
            configuration.routes["b"]?.local == LocalDoorConfiguration(address: .systemd(name: "b-door"), splice: false)
        )
        #expect(
            configuration.routes["c"]?.local == LocalDoorConfiguration(address: .unix(path: "/run/c.door"), mode: 0o660)
        )
        #expect(configuration.routes["c"]?.target == .unix(path: "/run/c.sock"))
        expectError(
            "routes:\n  a:\n    local: unix:/run/a.door\n",
            line: 3,
            key: "routes.a",
            message: "missing target"
        )
        expectError(
            "routes:\n  a:\n    unix: /run/a.sock\n    local: tcp:127.0.0.1:1\n",
            line: 4,
            key: "routes.a.local.address",
            message: "a door is unix:PATH or systemd:NAME"
        )
        expectError(
            "routes:\n  a:\n    unix: /run/a.sock\n    local: {address: systemd:x, mode: \"0600\"}\n",
            line: 4,
            key: "routes.a.local.mode",
            message: "mode applies to unix: doors only"
        )
        expectError(
            "routes:\n  a:\n    unix: /run/a.sock\n    local: {address: unix:/a, colour: red}\n",
            line: 4,
            key: "routes.a.local.colour",
            message: "unknown key"
        )
    }

    @Test("connect-timeout: per unix route, 10 s by default, and its errors")
    func connectTimeout() throws {
        let configuration = try ConfigurationLoader.parse(
            yaml: """
                routes:
                  a: {unix: /run/a.sock, connect-timeout: 250ms}
                  b:
                    connect-timeout: 2m
                    unix: /run/b.sock
                  c: {unix: /run/c.sock}
                """,
            file: file
        )
        #expect(configuration.routes["a"]?.connectTimeout == .milliseconds(250))
        #expect(configuration.routes["b"]?.connectTimeout == .minutes(2))
        #expect(configuration.routes["b"]?.target == .unix(path: "/run/b.sock"))
        #expect(configuration.routes["c"]?.connectTimeout == .seconds(10))
        #expect(RouteConfiguration.defaultConnectTimeout == UnixSocketConnector.defaultConnectTimeout)
        expectError(
            "routes:\n  a:\n    unix: /run/a.sock\n    connect-timeout: soon\n",
            line: 4,
            key: "routes.a.connect-timeout",
            message: "'soon' is not a duration"
        )
        expectError(
            "routes:\n  a:\n    unix: /run/a.sock\n    connect-timeout: 0\n",
            line: 4,
            key: "routes.a.connect-timeout",
            message: "must be more than 0 and at most 10m"
        )
        expectError(
            "routes:\n  a:\n    unix: /run/a.sock\n    connect-timeout: 11m\n",
            line: 4,
            key: "routes.a.connect-timeout",
            message: "must be more than 0 and at most 10m"
        )
        expectError(
            "routes:\n  a:\n    pty: {link: /run/a}\n    connect-timeout: 1s\n",
            line: 4,
            key: "routes.a.connect-timeout",
            message: "connect-timeout applies to unix: routes only"
        )
        expectError(
            "routes:\n  a:\n    connect-timeout: 1s\n",
            line: 3,
            key: "routes.a",
            message: "missing target"
        )
    }

    @Test("a listener listed twice")
    func duplicateListener() {
        expectError(
            """
            listen:
              - address: unix:/run/a.sock
                mode: "0660"
              - address: tcp:0.0.0.0:8083
                insecure: true
              - unix:/run/a.sock
            """,
            line: 6,
            key: "listen[2]",
            message: "unix:/run/a.sock is listed twice"
        )
    }

    @Test("listeners on TCP port 0 never collide: each gets a port of its own")
    func portZeroListeners() throws {
        var configuration = try ConfigurationLoader.parse(
            yaml: """
                listen:
                  - {address: 'tcp:127.0.0.1:0', insecure: true, allow-unauthenticated: true}
                  - {address: 'tcp:127.0.0.1:0', insecure: true, allow-unauthenticated: true}
                gateway:
                  listen: {address: 'tcp:127.0.0.1:0', tls: {cert: /c.pem, key: /k.pem}}
                  controller: {endpoint: 'c:1'}
                """,
            file: "bridge.yaml"
        )
        try configuration.finalize()
        #expect(
            configuration.listeners.map(\.address) == [
                .tcp(host: "127.0.0.1", port: 0), .tcp(host: "127.0.0.1", port: 0),
            ]
        )
        #expect(configuration.gateway?.listener.address == .tcp(host: "127.0.0.1", port: 0))
        // A fixed port is still one socket: the gateway cannot share it with a listener.
        var shared = try ConfigurationLoader.parse(
            yaml: """
                listen:
                  - {address: 'tcp:127.0.0.1:8443', insecure: true, allow-unauthenticated: true}
                gateway:
                  listen: {address: 'tcp:127.0.0.1:8443', tls: {cert: /c.pem, key: /k.pem}}
                  controller: {endpoint: 'c:1'}
                """,
            file: "bridge.yaml"
        )
        #expect(
            throws: ConfigurationError(
                file: "bridge.yaml",
                line: 4,
                key: "gateway.listen",
                "tcp:127.0.0.1:8443 is also under 'listen:'"
            )
        ) { try shared.finalize() }
    }

    @Test("a pty route with every key, and one without its link")
    func ptyRoute() throws {
        let configuration = try ConfigurationLoader.parse(
            yaml: """
                listen:
                  - unix:/run/a.sock
                routes:
                  console:
                    pty: {link: /run/jmp-bridge/console, mode: "0660", group: dialout, scrollback: 16KiB, lag-limit: 2MiB}
                """,
            file: "bridge.yaml"
        )
        var expected = PtyConfiguration(link: "/run/jmp-bridge/console", mode: 0o660, group: "dialout")
        expected.scrollback = 16 * 1024
        expected.lagLimit = 2 << 20
        #expect(configuration.routes["console"]?.target == .pty(expected))
        expectError(
            """
            routes:
              console:
                pty: {scrollback: 1KiB}
            """,
            line: 3,
            key: "routes.console.pty",
            message: "missing 'link' (the path exporter processes open)"
        )
    }

    @Test("a serial route with every key, the defaults, and the control socket")
    func serialRoute() throws {
        let configuration = try ConfigurationLoader.parse(
            yaml: """
                listen:
                  - unix:/run/a.sock
                control: unix:/run/jmp-bridge/control.sock
                routes:
                  uart0:
                    serial:
                      device: /dev/ttyUSB0
                      baud: 4000000
                      data-bits: 7
                      parity: even
                      stop-bits: 2
                      flow: rtscts
                      hupcl: true
                      scrollback: 1MiB
                      lag-limit: 8MiB
                  uart1:
                    serial: {device: /dev/ttyS1}
                """,
            file: "bridge.yaml"
        )
        var expected = SerialConfiguration(device: "/dev/ttyUSB0")
        expected.settings.baud = 4_000_000
        expected.settings.dataBits = 7
        expected.settings.parity = .even
        expected.settings.stopBits = 2
        expected.settings.flow = .rtscts
        expected.settings.hangUpOnClose = true
        expected.scrollback = 1 << 20
        expected.lagLimit = 8 << 20
        #expect(configuration.routes["uart0"]?.target == .serial(expected))
        guard case .serial(let defaults) = configuration.routes["uart1"]?.target else {
            Issue.record("uart1 is not a serial route")
            return
        }
        #expect(defaults.settings == SerialSettings())
        #expect("\(defaults.settings)" == "115200 8N1 flow=none")
        #expect(!defaults.settings.hangUpOnClose)
        #expect(configuration.control == "/run/jmp-bridge/control.sock")
    }

    @Test("serial keys with bad values, and a device used twice, name their line and key")
    func serialErrors() {
        let cases: [(String, Int, String, String)] = [
            ("parity: mark", 5, "routes.uart0.serial.parity", "'mark' is not none, even or odd"),
            ("data-bits: 9", 5, "routes.uart0.serial.data-bits", "'9' is not 5, 6, 7 or 8"),
            ("stop-bits: 3", 5, "routes.uart0.serial.stop-bits", "'3' is not 1 or 2"),
            ("flow: dtrdsr", 5, "routes.uart0.serial.flow", "'dtrdsr' is not none, rtscts or xonxoff"),
            ("baud: fast", 5, "routes.uart0.serial.baud", "'fast' is not a baud rate"),
            ("hupcl: maybe", 5, "routes.uart0.serial.hupcl", "expected true or false"),
            ("speed: 9600", 5, "routes.uart0.serial.speed", "unknown key"),
        ]
        for (line, number, key, message) in cases {
            expectError(
                """
                routes:
                  uart0:
                    serial:
                      device: /dev/ttyUSB0
                      \(line)
                """,
                line: number,
                key: key,
                message: message
            )
        }
        expectError(
            "routes:\n  uart0:\n    serial: {baud: 9600}\n",
            line: 3,
            key: "routes.uart0.serial",
            message: "missing 'device'"
        )
        expectError(
            "routes:\n  uart0:\n    serial: {device: ttyUSB0}\n",
            line: 3,
            key: "routes.uart0.serial.device",
            message: "'ttyUSB0' must be an absolute path"
        )
        expectError(
            """
            routes:
              uart0:
                serial: {device: /dev/ttyUSB0}
              uart1:
                serial: {device: /dev/ttyUSB0}
            """,
            line: 5,
            key: "routes.uart1.serial.device",
            message: "/dev/ttyUSB0 is already the device of route 'uart0'"
        )
        expectError("control: run/control.sock\n", line: 1, key: "control", message: "must be an absolute path")
    }

    @Test("the command-line serial target takes the same keys")
    func serialCommandLine() throws {
        let target = try RouteTarget.parse("serial:/dev/ttyACM0,baud=9600,parity=odd,flow=xonxoff")
        var expected = SerialConfiguration(device: "/dev/ttyACM0")
        expected.settings.baud = 9600
        expected.settings.parity = .odd
        expected.settings.flow = .xonxoff
        #expect(target == .serial(expected))
        #expect(throws: ConfigurationError.self) { try RouteTarget.parse("serial:/dev/ttyACM0,baud=") }
        #expect(throws: ConfigurationError.self) { try RouteTarget.parse("serial:dev/ttyACM0") }
        #expect(throws: ConfigurationError.self) { try RouteTarget.parse("serial:/dev/ttyACM0,parity") }
    }

    @Test("a route with an unknown target kind")
    func unknownTargetKind() {
        expectError(
            """
            routes:
              uart0:
                can: {device: can0}
            """,
            line: 3,
            key: "routes.uart0.can",
            message: "unknown key (expected one of: unix, pty, serial, local, connect-timeout)"
        )
    }

    @Test("a route without a target")
    func routeWithoutTarget() {
        expectError("routes:\n  session: {}\n", line: 2, key: "routes.session", message: "missing target")
        expectError("routes:\n  session:\n", line: 2, key: "routes.session", message: "expected a mapping")
        expectError("routes:\n  session: /run/a.sock\n", line: 2, key: "routes.session", message: "expected a mapping")
        expectError("routes:\n  - session\n", line: 2, key: "routes", message: "expected a mapping")
    }

    @Test("a relative unix path")
    func relativeUnixPath() {
        expectError(
            """
            routes:
              session:
                unix:
                  run/jumpstarter/exporter.sock
            """,
            line: 4,
            key: "routes.session.unix",
            message: "'run/jumpstarter/exporter.sock' must be an absolute path"
        )
        expectError(
            "routes:\n  session:\n    unix: exporter.sock\n",
            line: 3,
            key: "routes.session.unix",
            message: "must be an absolute path"
        )
        expectError(
            "routes:\n  session:\n    unix: /\(String(repeating: "s", count: 110))\n",
            line: 3,
            key: "routes.session.unix",
            message: "longer than 107 bytes"
        )
    }

    @Test("an invalid route name")
    func invalidRouteName() {
        let long = String(repeating: "r", count: 65)
        for name in ["../etc", "a b", "caf\u{E9}", long, "\"\""] {
            let shown = name == "\"\"" ? "" : name
            expectError(
                "listen: [unix:/run/a.sock]\nroutes:\n  ok: {unix: /run/ok.sock}\n  \(name):\n    unix: /run/x.sock\n",
                line: 4,
                key: name == "\"\"" ? "routes" : "routes.\(shown)",
                message: name == "\"\"" ? "expected a non-empty string" : "not a valid route name"
            )
        }
    }

    @Test("default-route naming a route that does not exist")
    func missingDefaultRoute() {
        expectError(
            """
            listen:
              - unix:/run/a.sock
            default-route: sesion
            routes:
              session:
                unix: /run/jumpstarter/exporter.sock
            """,
            line: 3,
            key: "default-route",
            message: "no route named 'sesion'"
        )
        // Also when there are no routes at all.
        expectError("\ndefault-route: session\n", line: 2, key: "default-route", message: "no route named 'session'")
        // And a default route that is not even a route name.
        expectError("default-route: ../etc\n", line: 1, key: "default-route", message: "not a valid route name")
    }

    @Test("validate() reports a missing default route for a configuration from the command line")
    func validateDefaultRoute() {
        let configuration = BridgeConfiguration(
            listeners: [ListenerConfiguration(address: .unix(path: "/run/a.sock"))],
            defaultRoute: "session"
        )
        #expect(throws: ConfigurationError(file: "command line", key: "default-route", "no route named 'session'")) {
            try configuration.validate()
        }
        let duplicate = BridgeConfiguration(
            listeners: [
                ListenerConfiguration(address: .unix(path: "/run/a.sock")),
                ListenerConfiguration(address: .unix(path: "/run/a.sock")),
            ]
        )
        #expect(throws: ConfigurationError(file: "command line", key: "listen", "unix:/run/a.sock is listed twice")) {
            try duplicate.validate()
        }
        let plain = BridgeConfiguration(listeners: [ListenerConfiguration(address: .tcp(host: "0.0.0.0", port: 1))])
        #expect(throws: ConfigurationError.self) { try plain.validate() }
    }

    @Test("a bad size in limits")
    func badSize() {
        let cases: [(String, String, String)] = [
            ("max-message-size", "lots", "'lots' is not a size"),
            ("max-message-size", "-1", "is not a size"),
            ("max-message-size", "1.5MiB", "is not a size"),
            ("max-message-size", "4MB/s", "is not a size"),
            ("max-message-size", "99999999999999999999", "is not a size"),
            ("max-message-size", "1023", "1023 is out of range 1024...67108864"),
            ("max-payload-size", "8MiB", "out of range"),
            ("stream-window", "60KiB", "61440 is out of range 65535...8388608"),
            ("stream-window", "16MiB", "out of range"),
            ("max-streams-per-connection", "0", "out of range"),
        ]
        for (key, value, message) in cases {
            expectError(
                "listen: [unix:/run/a.sock]\nlimits:\n  \(key): \(value)\n",
                line: 3,
                key: "limits.\(key)",
                message: message
            )
        }
        expectError(
            "limits:\n  max-message-bytes: 1MiB\n",
            line: 2,
            key: "limits.max-message-bytes",
            message: "unknown key"
        )
        expectError("limits: 4MiB\n", line: 1, key: "limits", message: "expected a mapping")
    }

    @Test("a bad duration in linger")
    func badDuration() {
        for value in ["soon", "5 minutes", "-5s", "1.5s", "5d", "1m30s", "1000000000s"] {
            expectError(
                "listen: [unix:/run/a.sock]\n\nlinger: \(value)\n",
                line: 3,
                key: "linger",
                message: "is not a duration"
            )
        }
        expectError("linger:\n  - 5s\n", line: 2, key: "linger", message: "expected a non-empty string")
    }

    @Test("a bad boolean")
    func badBool() {
        expectError(
            "listen:\n  - address: tcp:0.0.0.0:1\n    insecure: maybe\n",
            line: 3,
            key: "listen[0].insecure",
            message: "expected true or false"
        )
    }

    @Test("a key that appears twice at the top level")
    func duplicateTopLevelKey() {
        expectError(
            """
            listen:
              - unix:/run/a.sock
            routes:
              session:
                unix: /run/a.sock
            routes:
              other:
                unix: /run/b.sock
            """,
            line: 6,
            key: "routes",
            message: "key appears more than once"
        )
    }

    @Test("a key that appears twice inside a route")
    func duplicateNestedKey() {
        expectError(
            """
            listen:
              - unix:/run/a.sock
            routes:
              session:
                unix: /run/a.sock
                unix: /run/b.sock
            """,
            line: 6,
            key: "routes.session.unix",
            message: "key appears more than once"
        )
    }

    @Test("a repeated key is found in a CRLF file and in a flow mapping")
    func duplicateKeyOtherForms() {
        expectError(
            "# bridge\r\nlisten:\r\n  - unix:/run/a.sock\r\nroutes:\r\n  s:\r\n    unix: /run/a.sock\r\n    unix: /run/b.sock\r\n",
            line: 7,
            key: "routes.s.unix",
            message: "key appears more than once"
        )
        guard let error = parseError("listen: [unix:/run/a.sock]\nroutes: {a: {unix: /run/a.sock}, a: {unix: /b}}\n")
        else { return }
        #expect(error.line == 2, "\(error)")
        #expect(error.message == "key appears more than once")
    }

    @Test("a key that appears twice inside a listener")
    func duplicateListenerKey() {
        expectError(
            """
            listen:
              - address: unix:/run/a.sock
              - address: tcp:0.0.0.0:8083
                insecure: true
                address: tcp:0.0.0.0:8084
            """,
            line: 5,
            key: "listen[1].address",
            message: "key appears more than once"
        )
    }

    @Test("a route defined twice")
    func duplicateRoute() {
        expectError(
            """
            routes:
              session:
                unix: /run/a.sock
              session:
                unix: /run/b.sock
            """,
            line: 4,
            key: "routes.session",
            message: "more than once"
        )
    }

    @Test("ConfigurationError renders as FILE:LINE: KEY: message")
    func errorDescription() {
        #expect(
            ConfigurationError(file: "/etc/b.yaml", line: 7, key: "routes.x.unix", "must be absolute").description
                == "/etc/b.yaml:7: routes.x.unix: must be absolute"
        )
        #expect(ConfigurationError(file: "/etc/b.yaml", line: 7, "bad").description == "/etc/b.yaml:7: bad")
        #expect(
            ConfigurationError(file: "command line", key: "--listen", "bad").description
                == "command line: --listen: bad"
        )
        #expect(ConfigurationError(file: "f", "bad").description == "f: bad")
    }

    // MARK: - Command-line forms

    @Test("listen addresses")
    func listenAddresses() throws {
        #expect(try ListenAddress.parse("tcp:0.0.0.0:8083").get() == .tcp(host: "0.0.0.0", port: 8083))
        #expect(try ListenAddress.parse("tcp:[::]:0").get() == .tcp(host: "::", port: 0))
        #expect(try ListenAddress.parse("tcp:localhost:65535").get() == .tcp(host: "localhost", port: 65535))
        #expect(try ListenAddress.parse("unix:/run/a.sock").get() == .unix(path: "/run/a.sock"))
        #expect(ListenAddress.tcp(host: "::1", port: 1).description == "tcp:[::1]:1")
        #expect(ListenAddress.tcp(host: "h", port: 1).description == "tcp:h:1")
        #expect(ListenAddress.unix(path: "/a").description == "unix:/a")
        for bad in ["", "tcp:", "tcp:h:", "tcp:h:-1", "tcp:[::1]", "tcp:[::1]8083", "unix:", "file:/a"] {
            #expect(throws: ListenAddress.AddressError.self, "\(bad)") { try ListenAddress.parse(bad).get() }
        }
    }

    @Test("route targets from the command line")
    func routeTargets() throws {
        #expect(try RouteTarget.parse("unix:/run/a.sock") == .unix(path: "/run/a.sock"))
        #expect(RouteTarget.unix(path: "/run/a.sock").description == "unix:/run/a.sock")
        #expect(throws: ConfigurationError.self) { try RouteTarget.parse("unix:") }
        #expect(try RouteTarget.parse("pty:/run/console") == .pty(PtyConfiguration(link: "/run/console")))
        #expect(throws: ConfigurationError.self) { try RouteTarget.parse("pty:console") }
        #expect(
            try RouteTarget.parse("serial:/dev/ttyUSB0") == .serial(SerialConfiguration(device: "/dev/ttyUSB0"))
        )
        #expect(RouteTarget.serial(SerialConfiguration(device: "/dev/ttyS0")).description == "serial:/dev/ttyS0")
        #expect(throws: ConfigurationError.self) { try RouteTarget.parse("can:can0") }
    }
}
