/// One request on the control socket: the first line a local client sends.
///
/// The protocol is line-based: the client sends one request line; the bridge answers `ok` or
/// `error MESSAGE` on a line of its own. After `ok` to an attach, raw console bytes flow both
/// ways until either side closes (the client's end-of-file detaches it); a status reply is
/// text, one `key=value …` line per item, and the bridge closes the connection after it.
public enum ControlRequest: Sendable, Equatable {
    /// `attach ROUTE [rw|ro]`: attach to a console route, read-write unless `ro`.
    case attach(route: String, readOnly: Bool)
    /// `status`: routes, their consoles and counters.
    case status

    /// The longest request line accepted, newline included.
    public static let maximumLength = 1024

    /// The request as sent on the wire, newline included.
    public var line: String {
        switch self {
        case .attach(let route, let readOnly): return "attach \(route) \(readOnly ? "ro" : "rw")\n"
        case .status: return "status\n"
        }
    }

    /// Parses a request line (without its newline; a trailing `\r` is ignored), or says what is
    /// wrong with it.
    public static func parse(_ line: String) -> Result<ControlRequest, ControlRequestError> {
        var text = Substring(line)
        if text.hasSuffix("\r") { text = text.dropLast() }
        let words = text.split(separator: " ", omittingEmptySubsequences: true).map(String.init)
        switch words.first {
        case "status" where words.count == 1:
            return .success(.status)
        case "attach" where words.count == 2 || words.count == 3:
            let mode = words.count == 3 ? words[2] : "rw"
            guard mode == "rw" || mode == "ro" else {
                return .failure(ControlRequestError(message: "attach mode must be rw or ro, not '\(mode)'"))
            }
            return .success(.attach(route: words[1], readOnly: mode == "ro"))
        default:
            return .failure(
                ControlRequestError(
                    message: "unknown request '\(text.prefix(80))' (expected: attach ROUTE [rw|ro], status)"
                )
            )
        }
    }
}
