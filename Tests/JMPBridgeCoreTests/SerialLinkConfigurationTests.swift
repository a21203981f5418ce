import JMPTargets
import Testing

@testable import JMPBridgeCore

/// The `link:` of a `serial:` route, in the file and on the command line.
@Suite("Serial link configuration")
struct SerialLinkConfigurationTests {
    @Test("link: PATH and link: {path, mode, group}; no link by default")
    func forms() throws {
        let configuration = try ConfigurationLoader.parse(
            yaml: """
                listen:
                  - unix:/run/a.sock
                routes:
                  uart0:
                    serial: {device: /dev/ttyUSB0, link: /run/jmp-bridge/uart0}
                  uart1:
                    serial:
                      device: /dev/ttyUSB1
                      baud: 1500000
                      link: {path: /run/jmp-bridge/uart1, mode: "0660", group: root}
                  uart2:
                    serial: {device: /dev/ttyUSB2}
                """,
            file: file
        )
        var uart0 = SerialConfiguration(device: "/dev/ttyUSB0")
        uart0.link = SerialLinkConfiguration(path: "/run/jmp-bridge/uart0")
        #expect(configuration.routes["uart0"]?.target == .serial(uart0))
        var uart1 = SerialConfiguration(device: "/dev/ttyUSB1")
        uart1.settings.baud = 1_500_000
        uart1.link = SerialLinkConfiguration(path: "/run/jmp-bridge/uart1", mode: 0o660, group: "root")
        #expect(configuration.routes["uart1"]?.target == .serial(uart1))
        guard case .serial(let uart2) = configuration.routes["uart2"]?.target else {
            Issue.record("uart2 is not a serial route")
            return
        }
        #expect(uart2.link == nil)
        try configuration.validate()
    }

    @Test("bad links name their line and key")
    func errors() {
        let cases: [(String, Int, String, String)] = [
            ("link: run/uart0", 5, "routes.uart0.serial.link", "'run/uart0' must be an absolute path"),
            ("link: {path: run/uart0}", 5, "routes.uart0.serial.link.path", "'run/uart0' must be an absolute path"),
            ("link: {mode: \"0660\"}", 5, "routes.uart0.serial.link", "missing 'path'"),
            ("link: {path: /run/u, mode: \"0999\"}", 5, "routes.uart0.serial.link.mode", "not an octal file mode"),
            ("link: {path: /run/u, owner: root}", 5, "routes.uart0.serial.link.owner", "unknown key"),
            (
                "link: {path: /run/u, group: no-such-group-jmp}", 5, "routes.uart0.serial.link.group",
                "no-such-group-jmp",
            ),
            ("link: /dev/ttyUSB0", 5, "routes.uart0.serial.link", "the link cannot be the device itself"),
            ("link: [/run/u]", 5, "routes.uart0.serial.link", "expected"),
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
    }

    @Test("a link is no other route's link or device, in either order")
    func clashes() {
        expectError(
            """
            routes:
              console:
                pty: {link: /run/jmp-bridge/uart}
              uart0:
                serial: {device: /dev/ttyUSB0, link: /run/jmp-bridge/uart}
            """,
            line: 5,
            key: "routes.uart0.serial.link",
            message: "/run/jmp-bridge/uart is already the link of route 'console'"
        )
        expectError(
            """
            routes:
              uart0:
                serial: {device: /dev/ttyUSB0, link: /run/jmp-bridge/uart}
              console:
                pty: {link: /run/jmp-bridge/uart}
            """,
            line: 5,
            key: "routes.console.pty.link",
            message: "/run/jmp-bridge/uart is already the link of route 'uart0'"
        )
        expectError(
            """
            routes:
              uart0:
                serial: {device: /dev/ttyUSB0}
              uart1:
                serial: {device: /dev/ttyUSB1, link: /dev/ttyUSB0}
            """,
            line: 5,
            key: "routes.uart1.serial.link",
            message: "/dev/ttyUSB0 is the device of route 'uart0'"
        )
        expectError(
            """
            routes:
              uart1:
                serial: {device: /dev/ttyUSB1, link: /dev/ttyUSB0}
              uart0:
                serial: {device: /dev/ttyUSB0}
            """,
            line: 5,
            key: "routes.uart0.serial.device",
            message: "/dev/ttyUSB0 is the link of route 'uart1'"
        )
    }

    @Test("the command line takes link=PATH; a clash with a route from the file is found when merged")
    func commandLine() throws {
        let target = try RouteTarget.parse("serial:/dev/ttyACM0,baud=9600,link=/run/jmp-bridge/acm0")
        var expected = SerialConfiguration(device: "/dev/ttyACM0")
        expected.settings.baud = 9600
        expected.link = SerialLinkConfiguration(path: "/run/jmp-bridge/acm0")
        #expect(target == .serial(expected))
        #expect(throws: ConfigurationError.self) { try RouteTarget.parse("serial:/dev/ttyACM0,link=acm0") }
        #expect(throws: ConfigurationError.self) { try RouteTarget.parse("serial:/dev/ttyACM0,link=/dev/ttyACM0") }

        var configuration = BridgeConfiguration(
            listeners: [ListenerConfiguration(address: .unix(path: "/run/a.sock"))],
            routes: [
                "console": RouteConfiguration(
                    name: "console",
                    target: .pty(PtyConfiguration(link: "/run/jmp-bridge/acm0"))
                )
            ]
        )
        configuration.routes["acm0"] = RouteConfiguration(name: "acm0", target: target)
        do throws(ConfigurationError) {
            try configuration.validate()
            Issue.record("two routes with one link validated")
        } catch {
            #expect(error.key == "routes.console.pty.link", "\(error)")
            #expect(error.message == "/run/jmp-bridge/acm0 is already the link of route 'acm0'", "\(error)")
        }
    }
}
