import Logging

#if canImport(Glibc)
    import Glibc
#endif

/// A log handler for services whose standard error is connected to the journal: each line
/// starts with the sd-daemon priority prefix (`<3>` for errors, `<6>` for info, …), so the
/// journal records the right priority and `journalctl -p warning` works, and leaves out the
/// timestamp the journal already adds. Metadata follows the message as `key=value`.
public struct JournalLogHandler: LogHandler {
    /// Metadata attached to every line of this logger.
    public var metadata: Logger.Metadata = [:]
    /// The lowest level written.
    public var logLevel: Logger.Level = .info
    private let label: String

    /// Creates a handler writing to standard error.
    public init(label: String) {
        self.label = label
    }

    /// True when standard error is the journal: `JOURNAL_STREAM` (set by systemd as
    /// `DEVICE:INODE`) names the very file standard error is. `journalStream` is the variable's
    /// value (by default read from the environment).
    public static func isStandardErrorJournal(
        journalStream: String? = getenv("JOURNAL_STREAM").map { String(cString: $0) }
    ) -> Bool {
        guard let value = journalStream else { return false }
        let parts = value.split(separator: ":")
        guard parts.count == 2, let device = UInt64(parts[0]), let inode = UInt64(parts[1]) else { return false }
        var status = stat()
        guard fstat(STDERR_FILENO, &status) == 0 else { return false }
        return UInt64(status.st_dev) == device && UInt64(status.st_ino) == inode
    }

    /// The sd-daemon priority (syslog level) of a log level.
    public static func priority(of level: Logger.Level) -> Int {
        switch level {
        case .trace, .debug: return 7
        case .info: return 6
        case .notice: return 5
        case .warning: return 4
        case .error: return 3
        case .critical: return 2
        }
    }

    public subscript(metadataKey key: String) -> Logger.Metadata.Value? {
        get { self.metadata[key] }
        set { self.metadata[key] = newValue }
    }

    public func log(event: LogEvent) {
        var line = "<\(Self.priority(of: event.level))>\(event.message)"
        var merged = self.metadata
        if let extra = event.metadata { merged.merge(extra) { $1 } }
        for (key, value) in merged.sorted(by: { $0.key < $1.key }) {
            line += " \(key)=\(value)"
        }
        // One write per line, so that concurrent lines never interleave; newlines inside a
        // value would start an entry without a priority.
        line = String(line.map { $0.isNewline ? " " : $0 }) + "\n"
        var bytes = Array(line.utf8)
        bytes.withUnsafeMutableBytes { buffer in
            var offset = 0
            while offset < buffer.count {
                let written = write(STDERR_FILENO, buffer.baseAddress.map { $0 + offset }, buffer.count - offset)
                if written > 0 {
                    offset += written
                } else if written < 0 && errno == EINTR {
                    continue
                } else {
                    return
                }
            }
        }
    }
}
