import Foundation
import GRPCCore
import JMPTargets
import Logging
import Testing

@testable import JMPBridgeCore

/// `serial:` routes on fake serial devices made from real ptys: the bridge opens the slave
/// through a device path as it would `/dev/ttyUSB0`, the test plays the board on the master.
@Suite("Serial routes", .serialized, .timeLimit(.minutes(2)))
struct SerialRouteTests {
    static func withDevice<T>(_ body: (FakeSerialDevice, String) async throws -> T) async throws -> T {
        let directory = try makeTemporaryDirectory()
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let device = try FakeSerialDevice.plugIn(at: "\(directory)/ttyFAKE0")
        defer { device.unplug() }
        return try await body(device, directory)
    }

    @Test("the line settings are applied: 4000000 baud, 2 stop bits, RTS/CTS, raw, HUPCL cleared")
    func settingsApplied() async throws {
        try await Self.withDevice { device, _ in
            // Set HUPCL as a real serial port has it by default (a pty does not), so the checks
            // below mean something; a fresh pty is in canonical mode with echo.
            device.setHangUpOnClose()
            let before = device.attributes()
            #expect(before.c_cflag & tcflag_t(HUPCL) != 0)
            #expect(before.c_lflag & tcflag_t(ICANON) != 0)
            var serial = SerialConfiguration(device: device.path)
            serial.settings.baud = 4_000_000
            serial.settings.stopBits = 2
            serial.settings.flow = .rtscts
            try await BridgeHarness.with(targets: ["uart": { _ in .serial(serial) }]) { _ in
                var attributes = device.attributes()
                #expect(cfgetospeed(&attributes) == speed_t(B4000000))
                #expect(cfgetispeed(&attributes) == speed_t(B4000000))
                #expect(SerialDevice.baudRate(of: device.master) == 4_000_000)
                #expect(attributes.c_cflag & tcflag_t(CSTOPB) != 0)
                #expect(attributes.c_cflag & tcflag_t(CRTSCTS) != 0)
                #expect(
                    attributes.c_cflag & tcflag_t(HUPCL) == 0,
                    "HUPCL must be off so detaching never resets the board"
                )
                #expect(attributes.c_cflag & tcflag_t(CLOCAL | CREAD) == tcflag_t(CLOCAL | CREAD))
                #expect(attributes.c_cflag & tcflag_t(CSIZE) == tcflag_t(CS8))
                #expect(attributes.c_cflag & tcflag_t(PARENB) == 0)
                #expect(attributes.c_iflag & tcflag_t(IXON | IXOFF) == 0)
                #expect(attributes.c_lflag & tcflag_t(ICANON | ECHO | ISIG) == 0)
                #expect(attributes.c_oflag & tcflag_t(OPOST) == 0)
            }
        }
    }

    @Test("a rate without a B constant (250000) is set with termios2; XON/XOFF; HUPCL when asked")
    func customRate() async throws {
        try await Self.withDevice { device, _ in
            var serial = SerialConfiguration(device: device.path)
            serial.settings.baud = 250_000
            serial.settings.flow = .xonxoff
            serial.settings.hangUpOnClose = true
            try await BridgeHarness.with(targets: ["uart": { _ in .serial(serial) }]) { _ in
                let attributes = device.attributes()
                #expect(SerialDevice.baudRate(of: device.master) == 250_000)
                #expect(attributes.c_iflag & tcflag_t(IXON | IXOFF) == tcflag_t(IXON | IXOFF))
                #expect(attributes.c_cflag & tcflag_t(CRTSCTS) == 0)
                #expect(attributes.c_cflag & tcflag_t(HUPCL) != 0)
            }
        }
    }

    /// A pty forces 8 data bits and no parity whatever it is told, so the character format is
    /// checked on the termios the bridge computes.
    @Test("data bits, parity and stop bits map to CSIZE, PARENB/PARODD and CSTOPB")
    func characterFormat() {
        let cases: [(Int, SerialSettings.Parity, Int, tcflag_t)] = [
            (5, .odd, 2, tcflag_t(CS5 | PARENB | PARODD | CSTOPB)),
            (6, .even, 1, tcflag_t(CS6 | PARENB)),
            (7, .even, 2, tcflag_t(CS7 | PARENB | CSTOPB)),
            (8, .none, 1, tcflag_t(CS8)),
        ]
        for (bits, parity, stop, expected) in cases {
            var settings = SerialSettings()
            settings.dataBits = bits
            settings.parity = parity
            settings.stopBits = stop
            var attributes = termios()
            attributes.c_cflag = tcflag_t(HUPCL | CS8 | PARENB | PARODD | CSTOPB)
            settings.apply(to: &attributes)
            let mask = tcflag_t(CSIZE | PARENB | PARODD | CSTOPB | HUPCL)
            #expect(attributes.c_cflag & mask == expected, "\(settings)")
        }
    }

    @Test("the device is locked: another process cannot lock it, and a second bridge refuses to start")
    func exclusive() async throws {
        try await Self.withDevice { device, directory in
            let serial = SerialConfiguration(device: device.path)
            try await BridgeHarness.with(targets: ["uart": { _ in .serial(serial) }]) { _ in
                let other = open(device.path, O_RDWR | O_NOCTTY | O_NONBLOCK | O_CLOEXEC)
                #expect(other >= 0)  // root may open despite TIOCEXCL; the lock is what holds
                #expect(flock(other, LOCK_EX | LOCK_NB) != 0 && errno == EWOULDBLOCK)
                close(other)

                var logger = Logger(label: "second-bridge")
                logger.logLevel = .critical
                let second = BridgeServer(
                    configuration: BridgeConfiguration(
                        listeners: [ListenerConfiguration(address: .unix(path: "\(directory)/second.sock"))],
                        routes: ["uart": RouteConfiguration(name: "uart", target: .serial(serial))]
                    ),
                    logger: logger
                )
                do {
                    try await second.start()
                    try? await second.shutdown()
                    Issue.record("a second bridge started on a locked device")
                } catch {
                    #expect("\(error)".contains("route 'uart'"), "\(error)")
                    #expect("\(error)".contains("\(device.path) is in use"), "\(error)")
                }
            }
            // Once the bridge has stopped, the lock is gone with its descriptor.
            let after = open(device.path, O_RDWR | O_NOCTTY | O_NONBLOCK | O_CLOEXEC)
            #expect(after >= 0 && flock(after, LOCK_EX | LOCK_NB) == 0)
            close(after)
        }
    }

    @Test("unplugging ends attached streams and refuses new ones with UNAVAILABLE; replugging brings the route back")
    func unplugAndReplug() async throws {
        let directory = try makeTemporaryDirectory()
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let path = "\(directory)/ttyFAKE0"
        let device = try FakeSerialDevice.plugIn(at: path)
        try await BridgeHarness.with(
            targets: ["uart": { _ in .serial(SerialConfiguration(device: path)) }],
            control: true
        ) { bridge in
            try await bridge.withClient { client in
                let progress = ByteProgress()
                async let attached: Router.Received = Router.call(client, metadata: ["jmp-route": "uart"]) { _ in
                    try await Task.sleep(for: .seconds(3600))
                } until: { received in
                    progress.set(received.bytes)
                    return false
                }
                try device.write(Array("U-Boot\r\n".utf8))
                #expect(await progress.wait(for: 8))

                device.unplug()
                do {
                    _ = try await attached
                    Issue.record("the attached stream did not fail when the device went away")
                } catch let error as RPCError {
                    #expect(error.code == .unavailable, "\(error)")
                    #expect(error.message.contains("serial device \(path) went away"), "\(error)")
                }
                do {
                    _ = try await Router.call(client, metadata: ["jmp-route": "uart"]) { _ in
                        try await Task.sleep(for: .seconds(3600))
                    }
                    Issue.record("a stream attached to an unplugged device")
                } catch let error as RPCError {
                    #expect(error.code == .unavailable, "\(error)")
                    #expect(error.message.contains("route 'uart'"), "\(error)")
                }
                let down = try await ControlConnection.status(bridge.controlSocket).first {
                    $0.hasPrefix("route=uart ")
                }
                #expect(down?.contains("state=down") == true, "\(down ?? "no status line")")

                let replugged = try FakeSerialDevice.plugIn(at: path)
                defer { replugged.unplug() }
                replugged.setHangUpOnClose()
                try await eventually("the device to be reopened") {
                    bridge.server.environment.consoles.withLockedValue { $0["uart"]?.descriptor } != nil
                }
                #expect(replugged.attributes().c_cflag & tcflag_t(HUPCL) == 0)
                async let received = Router.call(client, metadata: ["jmp-route": "uart"]) { writer in
                    try await writer.write(Router.data(Array("ping".utf8)))
                    try await Task.sleep(for: .seconds(3600))
                } until: { received in
                    String(decoding: received.bytes, as: UTF8.self).hasSuffix("pong")
                }
                #expect(String(decoding: try await replugged.read(count: 4), as: UTF8.self) == "ping")
                try replugged.write(Array("pong".utf8))
                // The scrollback survived the unplug.
                #expect(String(decoding: try await received.bytes, as: UTF8.self) == "U-Boot\r\npong")
            }
        }
    }
}
