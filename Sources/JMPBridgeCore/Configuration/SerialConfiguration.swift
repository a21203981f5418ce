import JMPTargets

/// A `serial:` route: a serial device the bridge opens, locks and keeps open across streams.
public struct SerialConfiguration: Sendable, Equatable {
    /// The device, e.g. `/dev/ttyUSB0` or a stable `/dev/serial/by-id/…` link.
    public var device: String
    /// Speed, character format, flow control and HUPCL.
    public var settings = SerialSettings()
    /// Output bytes kept and replayed to each new attachment.
    public var scrollback: Int = 64 * 1024
    /// Output bytes an attachment may fall behind before it is cut.
    public var lagLimit: Int = 1024 * 1024
    /// Attachments (streams and local attaches) allowed at once; nil: no limit.
    public var maxAttachments: Int?
    /// A pty whose slave behaves like the device for programs that open a path themselves; nil:
    /// none.
    public var link: SerialLinkConfiguration?

    /// The keys of a `serial:` target, as documented in jmp-bridge.yaml(5); the command-line form
    /// `serial:DEVICE,KEY=VALUE,…` takes the same keys but `device` (and `link=PATH` only as a path).
    public static let keys = [
        "device", "baud", "data-bits", "parity", "stop-bits", "flow", "hupcl", "scrollback", "lag-limit",
        "max-attachments", "link",
    ]

    /// Creates a configuration for `device` with the defaults (115200 8N1, no flow control,
    /// HUPCL off).
    public init(device: String) {
        self.device = device
    }

    /// Sets one key from its text; returns what is wrong with the value, if anything.
    mutating func set(_ key: String, to text: String) -> String? {
        switch key {
        case "baud":
            guard let baud = Int(text), (50...16_000_000).contains(baud) else {
                return "'\(text)' is not a baud rate (50 to 16000000, e.g. 115200)"
            }
            self.settings.baud = baud
        case "data-bits":
            guard let bits = Int(text), (5...8).contains(bits) else { return "'\(text)' is not 5, 6, 7 or 8" }
            self.settings.dataBits = bits
        case "parity":
            guard let parity = SerialSettings.Parity(rawValue: text) else {
                return "'\(text)' is not none, even or odd"
            }
            self.settings.parity = parity
        case "stop-bits":
            guard let bits = Int(text), bits == 1 || bits == 2 else { return "'\(text)' is not 1 or 2" }
            self.settings.stopBits = bits
        case "flow":
            guard let flow = SerialSettings.Flow(rawValue: text) else {
                return "'\(text)' is not none, rtscts or xonxoff"
            }
            self.settings.flow = flow
        case "hupcl":
            switch text {
            case "true", "yes", "on": self.settings.hangUpOnClose = true
            case "false", "no", "off": self.settings.hangUpOnClose = false
            default: return "expected true or false"
            }
        case "scrollback":
            guard let size = Units.parseSize(text), (0...(64 << 20)).contains(size) else {
                return "'\(text)' is not a size from 0 to 64MiB (e.g. 64KiB)"
            }
            self.scrollback = size
        case "lag-limit":
            guard let size = Units.parseSize(text), (4096...(256 << 20)).contains(size) else {
                return "'\(text)' is not a size from 4KiB to 256MiB (e.g. 1MiB)"
            }
            self.lagLimit = size
        case "max-attachments":
            guard let count = Int(text), (1...100_000).contains(count) else {
                return "'\(text)' is not a number from 1 to 100000"
            }
            self.maxAttachments = count
        case "link":
            guard text.hasPrefix("/") else { return "'\(text)' must be an absolute path" }
            guard text != self.device else { return "the link cannot be the device itself" }
            self.link = SerialLinkConfiguration(path: text)
        default:
            return "unknown key (expected one of: \(Self.keys.dropFirst().joined(separator: ", ")))"
        }
        return nil
    }

    /// Parses the command-line form `DEVICE[,KEY=VALUE]…`, e.g. `/dev/ttyUSB0,baud=9600,parity=even`.
    static func parse(commandLine text: String) throws(ConfigurationError) -> SerialConfiguration {
        let parts = text.split(separator: ",", omittingEmptySubsequences: false).map(String.init)
        let device = parts.first ?? ""
        guard device.hasPrefix("/") else {
            throw ConfigurationError(file: "command line", key: "--route", "'\(device)' must be an absolute path")
        }
        var serial = SerialConfiguration(device: device)
        for option in parts.dropFirst() {
            guard let equals = option.firstIndex(of: "=") else {
                throw ConfigurationError(file: "command line", key: "--route", "'\(option)' is not KEY=VALUE")
            }
            let key = String(option[..<equals])
            if let problem = serial.set(key, to: String(option[option.index(after: equals)...])) {
                throw ConfigurationError(file: "command line", key: "--route", "serial \(key): \(problem)")
            }
        }
        return serial
    }
}
