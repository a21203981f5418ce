import CSystemd
import Logging

#if canImport(Glibc)
    import Glibc
#endif

/// Tells the service manager how the service is doing, through `sd_notify` (`Type=notify`
/// units): readiness, a status line, watchdog keep-alives, stopping and reloading, and the
/// file-descriptor store. Every call is a no-op when the process was not started with
/// `NOTIFY_SOCKET`, so the bridge behaves the same by hand and under systemd.
public struct ServiceNotifier: Sendable {
    /// True when a service manager listens (`NOTIFY_SOCKET` is set).
    public let isEnabled: Bool
    private let logger: Logger

    /// Reads `NOTIFY_SOCKET` from the environment (left in place: every later call needs it).
    /// `notifySocket` stands for its value (by default read from the environment).
    public init(logger: Logger, notifySocket: String? = getenv("NOTIFY_SOCKET").map { String(cString: $0) }) {
        self.isEnabled = notifySocket != nil
        self.logger = logger
    }

    /// `READY=1` with a status line: every listener and route is up.
    public func ready(status: String) {
        self.send("READY=1\nSTATUS=\(Self.oneLine(status))")
    }

    /// `STATUS=`: a one-line description shown by `systemctl status`.
    public func status(_ text: String) {
        self.send("STATUS=\(Self.oneLine(text))")
    }

    /// `WATCHDOG=1`: the service is alive.
    public func watchdog() {
        self.send("WATCHDOG=1")
    }

    /// `STOPPING=1` with a status line: a graceful stop has begun.
    public func stopping(status: String) {
        self.send("STOPPING=1\nSTATUS=\(Self.oneLine(status))")
    }

    /// `RELOADING=1` with `MONOTONIC_USEC=` (as `Type=notify-reload` expects) and a status line.
    public func reloading(status: String) {
        var now = timespec()
        clock_gettime(CLOCK_MONOTONIC, &now)
        let microseconds = UInt64(now.tv_sec) * 1_000_000 + UInt64(now.tv_nsec) / 1000
        self.send("RELOADING=1\nMONOTONIC_USEC=\(microseconds)\nSTATUS=\(Self.oneLine(status))")
    }

    /// Hands a duplicate of `descriptor` to the service manager's file-descriptor store under
    /// `name` (`FDSTORE=1`, `FDNAME=`), so that a restarted bridge gets it back in `LISTEN_FDS`.
    /// Returns false when there is no service manager or it refused (the log says why).
    @discardableResult
    public func store(descriptor: CInt, name: String) -> Bool {
        guard self.isEnabled else { return false }
        guard Self.isValidStoreName(name) else {
            self.logger.warning("not stored: invalid descriptor name", metadata: ["name": "\(name)"])
            return false
        }
        var descriptors = [descriptor]
        let result = sd_pid_notify_with_fds(0, 0, "FDSTORE=1\nFDNAME=\(name)", &descriptors, 1)
        if result <= 0 {
            self.logger.warning(
                "the service manager did not take the descriptor (is FileDescriptorStoreMax= set?)",
                metadata: ["name": "\(name)", "error": "\(result < 0 ? errnoText(-result) : "no notify socket")"]
            )
            return false
        }
        return true
    }

    /// Asks the service manager to close and forget every stored descriptor called `name`
    /// (`FDSTOREREMOVE=1`).
    public func removeStored(name: String) {
        guard Self.isValidStoreName(name) else { return }
        self.send("FDSTOREREMOVE=1\nFDNAME=\(name)")
    }

    /// How often to send `WATCHDOG=1`: half of `WATCHDOG_USEC`, or nil when the watchdog is off
    /// (or meant for another process, per `WATCHDOG_PID`).
    public var watchdogInterval: Duration? {
        var microseconds: UInt64 = 0
        guard sd_watchdog_enabled(0, &microseconds) > 0, microseconds > 0 else { return nil }
        return .microseconds(Int64(microseconds / 2))
    }

    /// Names the store and `FileDescriptorName=` accept: up to 255 printable ASCII characters
    /// without ':'.
    public static func isValidStoreName(_ name: String) -> Bool {
        !name.isEmpty && name.utf8.count <= 255
            && name.utf8.allSatisfy { $0 > 0x20 && $0 < 0x7F && $0 != UInt8(ascii: ":") }
    }

    private func send(_ state: String) {
        guard self.isEnabled else { return }
        let result = sd_notify(0, state)
        if result < 0 {
            self.logger.warning(
                "sd_notify failed",
                metadata: ["state": "\(state.prefix { $0 != "\n" })", "error": "\(errnoText(-result))"]
            )
        }
    }

    /// Status lines are single lines: a newline would start another assignment.
    private static func oneLine(_ text: String) -> String {
        String(text.map { $0.isNewline ? " " : $0 })
    }
}
