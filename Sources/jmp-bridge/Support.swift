#if canImport(Glibc)
    import Glibc
#endif

/// Writes `jmp-bridge: error: MESSAGE` to standard error.
func printError(_ message: String) {
    var line = "jmp-bridge: error: \(message)\n"
    line.withUTF8 { bytes in
        _ = write(2, bytes.baseAddress, bytes.count)
    }
}

/// Writes `jmp-bridge: MESSAGE` to standard error.
func printMessage(_ message: String) {
    var line = "jmp-bridge: \(message)\n"
    line.withUTF8 { bytes in
        _ = write(2, bytes.baseAddress, bytes.count)
    }
}

/// Whether a file exists at `path`.
func fileExists(_ path: String) -> Bool {
    access(path, F_OK) == 0
}
