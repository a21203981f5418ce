#if canImport(Glibc)
    import Glibc
#endif

/// The line settings of a serial device: speed, character format and flow control. The device
/// is always raw (no echo, no line editing, no translation) and ignores modem status lines.
public struct SerialSettings: Sendable, Equatable, CustomStringConvertible {
    /// Parity bit.
    public enum Parity: String, Sendable, CaseIterable {
        case none, even, odd
    }

    /// Flow control.
    public enum Flow: String, Sendable, CaseIterable {
        /// No flow control.
        case none
        /// Hardware flow control on the RTS and CTS lines.
        case rtscts
        /// Software flow control with XON/XOFF characters, both directions.
        case xonxoff
    }

    /// Bits per second; any positive rate (the standard ones use the classic constants).
    public var baud: Int = 115_200
    /// Data bits per character, 5 to 8.
    public var dataBits: Int = 8
    /// Parity.
    public var parity: Parity = .none
    /// Stop bits, 1 or 2.
    public var stopBits: Int = 1
    /// Flow control.
    public var flow: Flow = .none
    /// Hang up (drop DTR) on the last close. Off by default: closing must never reset a board.
    public var hangUpOnClose = false

    /// The defaults: 115200 8N1, no flow control, HUPCL off.
    public init() {}

    /// The speeds the kernel has a `Bnnn` constant for; other rates are set with termios2.
    public static let standardRates: [Int: speed_t] = [
        50: speed_t(B50), 75: speed_t(B75), 110: speed_t(B110), 134: speed_t(B134), 150: speed_t(B150),
        200: speed_t(B200), 300: speed_t(B300), 600: speed_t(B600), 1200: speed_t(B1200),
        1800: speed_t(B1800), 2400: speed_t(B2400), 4800: speed_t(B4800), 9600: speed_t(B9600),
        19200: speed_t(B19200), 38400: speed_t(B38400), 57600: speed_t(B57600), 115_200: speed_t(B115200),
        230_400: speed_t(B230400), 460_800: speed_t(B460800), 500_000: speed_t(B500000),
        576_000: speed_t(B576000), 921_600: speed_t(B921600), 1_000_000: speed_t(B1000000),
        1_152_000: speed_t(B1152000), 1_500_000: speed_t(B1500000), 2_000_000: speed_t(B2000000),
        2_500_000: speed_t(B2500000), 3_000_000: speed_t(B3000000), 3_500_000: speed_t(B3500000),
        4_000_000: speed_t(B4000000),
    ]

    public var description: String {
        let parity: String
        switch self.parity {
        case .none: parity = "N"
        case .even: parity = "E"
        case .odd: parity = "O"
        }
        return "\(self.baud) \(self.dataBits)\(parity)\(self.stopBits) flow=\(self.flow.rawValue)"
            + (self.hangUpOnClose ? " hupcl" : "")
    }

    /// Puts these settings into `attributes`: raw mode, character format, flow control, HUPCL,
    /// CLOCAL and CREAD, reads return as soon as one byte is there. A standard speed is set here
    /// too; any other needs ``SerialDevice`` to set it with termios2 afterwards.
    public func apply(to attributes: inout termios) {
        cfmakeraw(&attributes)
        attributes.c_cflag &= ~tcflag_t(CSIZE | PARENB | PARODD | CSTOPB | HUPCL)
        attributes.c_cflag &= ~tcflag_t(CRTSCTS)
        attributes.c_cflag |= tcflag_t(CREAD | CLOCAL)
        switch self.dataBits {
        case 5: attributes.c_cflag |= tcflag_t(CS5)
        case 6: attributes.c_cflag |= tcflag_t(CS6)
        case 7: attributes.c_cflag |= tcflag_t(CS7)
        default: attributes.c_cflag |= tcflag_t(CS8)
        }
        switch self.parity {
        case .none: break
        case .even: attributes.c_cflag |= tcflag_t(PARENB)
        case .odd: attributes.c_cflag |= tcflag_t(PARENB | PARODD)
        }
        if self.stopBits == 2 { attributes.c_cflag |= tcflag_t(CSTOPB) }
        if self.hangUpOnClose { attributes.c_cflag |= tcflag_t(HUPCL) }
        attributes.c_iflag &= ~tcflag_t(IXON | IXOFF | IXANY)
        switch self.flow {
        case .none: break
        case .rtscts: attributes.c_cflag |= tcflag_t(CRTSCTS)
        case .xonxoff: attributes.c_iflag |= tcflag_t(IXON | IXOFF)
        }
        withUnsafeMutableBytes(of: &attributes.c_cc) { cc in
            cc[Int(VMIN)] = 1
            cc[Int(VTIME)] = 0
        }
        if let speed = Self.standardRates[self.baud] {
            cfsetispeed(&attributes, speed)
            cfsetospeed(&attributes, speed)
        }
    }
}
