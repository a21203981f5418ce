import Foundation
import JMPTargets
import Testing

@testable import JMPBridgeCore

/// The pty link of a `serial:` route, with a fake serial device made from a real pty (the test
/// plays the board on its master) and the test as the program that opens the link.
@Suite("Serial links", .serialized, .timeLimit(.minutes(2)))
struct SerialLinkTests {
    /// Runs `body` with a bridge serving route `uart` on a fake device at `DIR/ttyFAKE0` with its
    /// link at `DIR/uart-link`, and the program's descriptor of the link (closed afterwards).
    static func withLink(
        lagLimit: Int? = nil,
        _ body: (BridgeHarness, _ device: String, _ link: String, _ program: CInt) async throws -> Void
    ) async throws {
        let directory = try makeTemporaryDirectory()
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let devicePath = "\(directory)/ttyFAKE0"
        let linkPath = "\(directory)/uart-link"
        var serial = SerialConfiguration(device: devicePath)
        serial.link = SerialLinkConfiguration(path: linkPath)
        if let lagLimit { serial.lagLimit = lagLimit }
        try await BridgeHarness.with(targets: ["uart": { _ in .serial(serial) }], control: true) { bridge in
            let program = open(linkPath, O_RDWR | O_NOCTTY | O_CLOEXEC)
            try #require(program >= 0, "cannot open the link: \(String(cString: strerror(errno)))")
            defer { close(program) }
            try await body(bridge, devicePath, linkPath, program)
        }
    }

    /// Reads the link until `expected` arrived at the end of what was read; returns all of it.
    static func read(_ program: CInt, until expected: String, timeout: Double = 10) async throws -> String {
        var text = ""
        while !text.hasSuffix(expected) {
            let more = try await blocking { try readAvailable(program, timeout: timeout) }
            if more.isEmpty { break }
            text += String(decoding: more, as: UTF8.self)
        }
        return text
    }

    /// `read()` polled until what it reads satisfies `condition` (the bridge acts on timers and
    /// on other loops; there is no event to wait for from here); nil: not there yet.
    static func pollStatus<Status>(
        _ what: String,
        _ read: () async throws -> Status?,
        until condition: (Status) -> Bool
    ) async throws -> Status {
        let deadline = Date().addingTimeInterval(15)
        var last: Status?
        while true {
            if let status = try await read() {
                if condition(status) { return status }
                last = status
            }
            guard Date() < deadline else { throw TimedOut(what: "\(what) (last: \(String(describing: last)))") }
            try await Task.sleep(for: .milliseconds(20))
        }
    }

    /// The route's link status, polled until `condition` holds.
    static func linkStatus(
        _ bridge: BridgeHarness,
        _ what: String,
        until condition: (SerialLinkStatus) -> Bool
    ) async throws -> SerialLinkStatus {
        try await Self.pollStatus(
            what,
            { try await bridge.server.environment.serialLinks.withLockedValue({ $0["uart"] })?.status().get() },
            until: condition
        )
    }

    /// The route's console status, polled until `condition` holds.
    static func status(
        _ bridge: BridgeHarness,
        _ what: String,
        until condition: (ConsoleStatus) -> Bool
    ) async throws -> ConsoleStatus {
        try await Self.pollStatus(
            what,
            { try await bridge.server.environment.consoles.withLockedValue({ $0["uart"] })?.status().get() },
            until: condition
        )
    }

    /// The device prints 256 KiB (64 × 4 KiB of `x`) while the program reads nothing.
    static func pileUp(on device: FakeSerialDevice) async throws {
        let chunk = [UInt8](repeating: UInt8(ascii: "x"), count: 4096)
        let master = device.master
        for _ in 0..<64 {
            try await blocking { try writeAll(master, chunk) }
        }
    }

    /// 256 KiB pile up while the program reads nothing (the pty takes what it can, the rest waits
    /// in the bridge, within the 1 MiB lag limit); the program flushes its input, and the device
    /// prints a fresh line at once. The program reads up to that line, which must arrive, after
    /// at most the write under way when it flushed (not the 180-odd KiB that waited): returns
    /// how many stale bytes came before it.
    static func flushAfterPileUp(
        _ bridge: BridgeHarness,
        _ device: FakeSerialDevice,
        _ program: CInt
    ) async throws -> Int {
        try await Self.pileUp(on: device)
        _ = try await Self.status(bridge, "the device's output to be read") { $0.outputBytes == 64 * 4096 }
        #expect(tcflush(program, TCIFLUSH) == 0)
        try device.write(Array("fresh\r\n".utf8))
        let read = try await Self.read(program, until: "fresh\r\n")
        #expect(read.hasSuffix("fresh\r\n"))
        let stale = read.utf8.count - "fresh\r\n".utf8.count
        #expect(stale <= SerialLink.batchSize, "\(stale) stale bytes reached the program")
        return stale
    }

    @Test("the link carries output and input, is one attachment, and its pty has the device's speed")
    func carries() async throws {
        let directory = try makeTemporaryDirectory()
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let device = try FakeSerialDevice.plugIn(at: "\(directory)/ttyFAKE0")
        defer { device.unplug() }
        var serial = SerialConfiguration(device: device.path)
        serial.settings.baud = 921_600
        serial.link = SerialLinkConfiguration(path: "\(directory)/uart-link")
        try await BridgeHarness.with(targets: ["uart": { _ in .serial(serial) }], control: true) { bridge in
            let program = open("\(directory)/uart-link", O_RDWR | O_NOCTTY | O_CLOEXEC)
            try #require(program >= 0)
            defer { close(program) }
            var attributes = termios()
            #expect(tcgetattr(program, &attributes) == 0)
            #expect(cfgetospeed(&attributes) == speed_t(B921600))
            #expect(attributes.c_lflag & tcflag_t(ECHO | ICANON) == 0, "the link's pty must not echo")

            try device.write(Array("U-Boot\r\n".utf8))
            #expect(try await Self.read(program, until: "U-Boot\r\n") == "U-Boot\r\n")
            try writeAll(program, Array("boot\r".utf8))
            #expect(String(decoding: try await device.read(count: 5), as: UTF8.self) == "boot\r")

            let line = try await ControlConnection.status(bridge.controlSocket).first { $0.hasPrefix("route=uart ") }
            #expect(line?.contains(" link=\(directory)/uart-link ") == true, "\(line ?? "no status line")")
            #expect(line?.contains(" attachments=1 ") == true, "\(line ?? "no status line")")
            // Nothing else reached the board: no echo of its own output through the link.
            #expect(try await device.read(timeout: 0.2).isEmpty)
        }
    }

    @Test("unplugged: the link and the program's descriptor stay, and output flows again once replugged")
    func unplugAndReplug() async throws {
        try await Self.withLink { bridge, devicePath, linkPath, program in
            let device = try FakeSerialDevice.plugIn(at: devicePath)
            try await eventually("the device to be opened") {
                bridge.server.environment.consoles.withLockedValue { $0["uart"]?.descriptor } != nil
            }
            _ = try await Self.status(bridge, "the link to attach") { $0.attachments == 1 }
            try device.write(Array("first\r\n".utf8))
            #expect(try await Self.read(program, until: "first\r\n") == "first\r\n")
            let slave = try FileManager.default.destinationOfSymbolicLink(atPath: linkPath)

            device.unplug()
            _ = try await Self.status(bridge, "the route to go down") { !$0.up }
            #expect(try FileManager.default.destinationOfSymbolicLink(atPath: linkPath) == slave)
            var poller = pollfd(fd: program, events: Int16(POLLIN), revents: 0)
            #expect(poll(&poller, 1, 0) == 0, "the program must see neither data nor a hang-up")

            let replugged = try FakeSerialDevice.plugIn(at: devicePath)
            defer { replugged.unplug() }
            _ = try await Self.status(bridge, "the link to attach again") { $0.up && $0.attachments == 1 }
            try replugged.write(Array("back\r\n".utf8))
            #expect(try await Self.read(program, until: "back\r\n") == "back\r\n")
            try writeAll(program, Array("ls\r".utf8))
            #expect(String(decoding: try await replugged.read(count: 3), as: UTF8.self) == "ls\r")
            #expect(try FileManager.default.destinationOfSymbolicLink(atPath: linkPath) == slave)
        }
    }

    @Test("output that piled up while nobody read is dropped when the program flushes its input, as PySerial does")
    func flushDropsWhatWaits() async throws {
        try await Self.withLink { bridge, devicePath, _, program in
            let device = try FakeSerialDevice.plugIn(at: devicePath)
            defer { device.unplug() }
            _ = try await Self.status(bridge, "the link to attach") { $0.up && $0.attachments == 1 }
            let stale = try await Self.flushAfterPileUp(bridge, device, program)
            let flushed = try await Self.linkStatus(bridge, "the link's status") { _ in true }
            #expect(flushed.flushes == 1)
            #expect(flushed.flushedBytes > 100 * 1024 && stale + flushed.flushedBytes <= 64 * 4096, "\(flushed)")
            let status = try await Self.status(bridge, "the status") { _ in true }
            #expect(status.cuts == 0 && status.attachments == 1)
            let report = try await ControlConnection.status(bridge.controlSocket)
            let line = report.first { $0.hasPrefix("route=uart ") } ?? ""
            #expect(
                line.contains(" link-flushes=1 link-flushed-bytes=\(flushed.flushedBytes) link-input-waiting=0"),
                "\(line)"
            )
        }
    }

    @Test("a flush is seen while the device holds back the program's input, and what it prints next arrives")
    func flushWhileInputIsHeldBack() async throws {
        try await Self.withLink { bridge, devicePath, _, program in
            let device = try FakeSerialDevice.plugIn(at: devicePath)
            defer { device.unplug() }
            _ = try await Self.status(bridge, "the link to attach") { $0.up && $0.attachments == 1 }
            // Nobody reads the device's side, so it soon takes no more input: the program types
            // until the link holds its input back and no longer reads the master, which is where
            // the flush status waits.
            #expect(fcntl(program, F_SETFL, fcntl(program, F_GETFL) | O_NONBLOCK) == 0)
            let typed = [UInt8](repeating: UInt8(ascii: "i"), count: 4096)
            let deadline = Date().addingTimeInterval(15)
            while try await Self.linkStatus(bridge, "the input", until: { _ in true }).inputInFlight
                < SerialLink.inputHighWatermark
            {
                guard Date() < deadline else { throw TimedOut(what: "the link to hold back the input") }
                if write(program, typed, typed.count) < 0 {
                    #expect(errno == EAGAIN)
                    try await Task.sleep(for: .milliseconds(10))
                }
            }
            // 256 KiB of output while the program reads nothing, then a flush and a fresh line.
            _ = try await Self.flushAfterPileUp(bridge, device, program)
            let link = try await Self.linkStatus(bridge, "the link's status") { _ in true }
            #expect(link.flushes == 1 && link.inputInFlight >= SerialLink.inputHighWatermark, "\(link)")
            // status shows the operator the input that waits for the device.
            let report = try await ControlConnection.status(bridge.controlSocket)
            let line = report.first { $0.hasPrefix("route=uart ") } ?? ""
            let waiting = line.split(separator: " ").first { $0.hasPrefix("link-input-waiting=") }
                .flatMap { Int($0.dropFirst("link-input-waiting=".count)) }
            #expect((waiting ?? 0) >= SerialLink.inputHighWatermark, "\(line)")
        }
    }

    @Test("a link whose reader lags is cut like any attachment, and attaches again once it has read")
    func lag() async throws {
        try await Self.withLink(lagLimit: 4096) { bridge, devicePath, _, program in
            let device = try FakeSerialDevice.plugIn(at: devicePath)
            defer { device.unplug() }
            _ = try await Self.status(bridge, "the link to attach") { $0.up && $0.attachments == 1 }
            // Far more than the pty and the lag limit hold, while the program reads nothing.
            try await Self.pileUp(on: device)
            // Once cut, the link attaches again as soon as the pty has taken the write under way;
            // on a loaded machine that may happen, and the link be cut again, between two looks
            // at the status: at least one cut, however many.
            _ = try await Self.status(bridge, "the link to be cut") { $0.cuts >= 1 }
            // The program takes what waits; the link attaches again, and new output arrives.
            var drained = 0
            let deadline = Date().addingTimeInterval(15)
            while true {
                guard Date() < deadline else { throw TimedOut(what: "the link to attach again") }
                let more = try await blocking { try readAvailable(program, timeout: 0.05) }
                drained += more.count
                if more.isEmpty,
                    try await bridge.server.environment.consoles.withLockedValue({ $0["uart"] })?
                        .status().get().attachments == 1
                {
                    break
                }
            }
            #expect(drained > 0 && drained < 64 * 4096, "\(drained) bytes")
            try device.write(Array("fresh\r\n".utf8))
            #expect(try await Self.read(program, until: "fresh\r\n") == "fresh\r\n")
        }
    }
}
