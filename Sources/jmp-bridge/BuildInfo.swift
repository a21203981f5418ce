/// Facts about this build of jmp-bridge.
enum BuildInfo {
    /// The release version, as `jmp-bridge --version` prints it.
    static let version = "0.1.0"
}
