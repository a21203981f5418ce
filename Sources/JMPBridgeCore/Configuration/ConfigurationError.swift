/// A configuration problem, located as precisely as is known: `FILE:LINE: KEY: PROBLEM`.
public struct ConfigurationError: Error, Sendable, Equatable, CustomStringConvertible {
    /// The configuration file, or `command line`.
    public var file: String
    /// The 1-based line in `file`, if known.
    public var line: Int?
    /// The key or option at fault, e.g. `routes.session.unix` or `--listen`.
    public var key: String?
    /// What is wrong.
    public var message: String

    /// Creates an error.
    public init(file: String, line: Int? = nil, key: String? = nil, _ message: String) {
        self.file = file
        self.line = line
        self.key = key
        self.message = message
    }

    public var description: String {
        var text = self.file
        if let line { text += ":\(line)" }
        text += ": "
        if let key { text += "\(key): " }
        return text + self.message
    }
}
