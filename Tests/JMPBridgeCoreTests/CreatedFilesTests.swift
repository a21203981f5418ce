import Testing

@testable import JMPBridgeCore

/// What `check --files` looks at before `serve` creates its sockets and console links: which
/// files, where the configuration names them, and in which directory each is created. The
/// checks against a real file system, with `serve` failing the same way: Tests/Interop/test_faults.py.
@Suite("Created files")
struct CreatedFilesTests {
    @Test("every socket and link serve creates is listed with its key and the line of its section")
    func createdFiles() throws {
        let yaml = """
            listen:
              - unix:/run/jmp-bridge/grpc.sock
              - {address: 'tcp:127.0.0.1:1', insecure: true, allow-unauthenticated: true}
            control: unix:/run/jmp-bridge/control.sock
            metrics: unix:/run/jmp-bridge/metrics.sock
            routes:
              echo: {unix: /run/echo.sock, local: {address: 'unix:/run/jmp-bridge/echo.door'}}
              plain: {unix: /run/plain.sock}
              console: {pty: {link: /run/jmp-bridge/console}}
              uart: {serial: {device: /dev/ttyUSB0, link: /run/jmp-bridge/uart}}
              acm: {serial: {device: /dev/ttyACM0}}
            gateway:
              listen: unix:/run/jmp-bridge/gateway.sock
              controller: {endpoint: 'controller.example.com:443'}
            """
        var configuration = try ConfigurationLoader.parse(yaml: yaml, file: "bridge.yaml")
        try configuration.finalize()
        let files = configuration.createdFiles.map { "\($0.at.description)\($0.path) \($0.kind)" }
        #expect(
            files == [
                "bridge.yaml:9: routes.console.pty.link: /run/jmp-bridge/console symlink",
                "bridge.yaml:7: routes.echo.local: /run/jmp-bridge/echo.door socket",
                "bridge.yaml:10: routes.uart.serial.link: /run/jmp-bridge/uart symlink",
                "bridge.yaml:2: listen: /run/jmp-bridge/grpc.sock socket",
                "bridge.yaml:13: gateway.listen: /run/jmp-bridge/gateway.sock socket",
                "bridge.yaml: control: /run/jmp-bridge/control.sock socket",
                "bridge.yaml: metrics: /run/jmp-bridge/metrics.sock socket",
            ]
        )
    }

    @Test("a file is created in the directory its path names; a bare name in the working directory")
    func directories() {
        #expect(BridgeConfiguration.directory(of: "/run/jmp-bridge/grpc.sock") == "/run/jmp-bridge")
        #expect(BridgeConfiguration.directory(of: "/grpc.sock") == "/")
        #expect(BridgeConfiguration.directory(of: "grpc.sock") == ".")
        #expect(BridgeConfiguration.directory(of: "run/grpc.sock") == "run")
    }
}
