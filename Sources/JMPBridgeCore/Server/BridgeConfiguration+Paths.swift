#if canImport(Glibc)
    import Glibc
#endif

extension BridgeConfiguration {
    /// A file `serve` creates at start: a listening socket (`unix:` listeners, doors, the control
    /// socket and metrics endpoint) or a console's symlink (`pty:` links, `serial:` links).
    struct CreatedFile {
        /// What `serve` replaces at the path, and refuses to replace when something else is there.
        enum Kind {
            case socket
            case symlink
        }

        let path: String
        let kind: Kind
        /// Where the configuration names it.
        let at: ConfigurationError
    }

    /// Every file `serve` creates at start, located at its key: the routes' links and doors (by
    /// route name), then the `unix:` listeners, the gateway's, the control socket and the
    /// metrics endpoint's.
    var createdFiles: [CreatedFile] {
        let origin = self.source ?? "command line"
        var files: [CreatedFile] = []
        func add(_ path: String, _ kind: CreatedFile.Kind, line: Int?, key: String) {
            let at = ConfigurationError(file: origin, line: line, key: key, "")
            files.append(CreatedFile(path: path, kind: kind, at: at))
        }
        for route in self.routes.values.sorted(by: { $0.name < $1.name }) {
            switch route.target {
            case .pty(let pty): add(pty.link, .symlink, line: route.line, key: "routes.\(route.name).pty.link")
            case .serial(let serial):
                if let link = serial.link {
                    add(link.path, .symlink, line: route.line, key: "routes.\(route.name).serial.link")
                }
            case .unix: break
            }
            if case .unix(let path) = route.local?.address {
                add(path, .socket, line: route.line, key: "routes.\(route.name).local")
            }
        }
        for listener in self.listeners {
            if case .unix(let path) = listener.address { add(path, .socket, line: listener.line, key: "listen") }
        }
        if let gateway = self.gateway, case .unix(let path) = gateway.listener.address {
            add(path, .socket, line: gateway.line, key: "gateway.listen")
        }
        if let control = self.control, !control.hasPrefix("systemd:") {
            add(control, .socket, line: nil, key: "control")
        }
        if case .unix(let path) = self.metrics { add(path, .socket, line: nil, key: "metrics") }
        return files
    }

    /// Checks, without creating anything, that `serve` can create each of ``createdFiles``: its
    /// directory exists and this user may create files in it, and what is at the path already
    /// is what `serve` replaces. Then looks at each serial route's device, which `serve` waits
    /// for if it cannot open it.
    ///
    /// - Returns: a warning (`FILE:LINE: KEY: PROBLEM`) for each serial device this user cannot
    ///   open for reading and writing now.
    /// - Throws: the first file `serve` could not create, located at its key.
    func checkCreatedFiles() throws(ConfigurationError) -> [String] {
        for file in self.createdFiles {
            if let problem = Self.problem(creating: file.path, as: file.kind) {
                var located = file.at
                located.message = problem
                throw located
            }
        }
        let origin = self.source ?? "command line"
        return self.routes.values.sorted(by: { $0.name < $1.name }).compactMap { route in
            guard case .serial(let serial) = route.target, access(serial.device, R_OK | W_OK) != 0 else { return nil }
            let code = errno
            let hint =
                code == EACCES ? " (the bridge's user needs read and write access, e.g. as a member of its group)" : ""
            return ConfigurationError(
                file: origin,
                line: route.line,
                key: "routes.\(route.name).serial.device",
                "cannot open \(serial.device): \(String(cString: strerror(code)))\(hint); "
                    + "serve starts and opens it once it can"
            ).description
        }
    }

    /// Why `serve` could not create `path`, or nil.
    static func problem(creating path: String, as kind: CreatedFile.Kind) -> String? {
        let directory = Self.directory(of: path)
        var status = stat()
        guard stat(directory, &status) == 0 else {
            return "cannot create \(path): \(directory): \(String(cString: strerror(errno)))"
        }
        guard status.st_mode & S_IFMT == S_IFDIR else {
            return "cannot create \(path): \(directory) is not a directory"
        }
        guard access(directory, W_OK | X_OK) == 0 else {
            return "cannot create \(path) in \(directory): \(String(cString: strerror(errno)))"
        }
        guard lstat(path, &status) == 0 else { return nil }
        switch kind {
        case .socket where status.st_mode & S_IFMT != S_IFSOCK:
            return "\(path) exists and is not a socket; serve replaces only a socket there"
        case .symlink where status.st_mode & S_IFMT != S_IFLNK:
            return "\(path) exists and is not a symlink; serve replaces only a symlink there"
        default:
            return nil
        }
    }

    /// The directory a file at `path` is created in: `.` for a bare name.
    static func directory(of path: String) -> String {
        guard let slash = path.lastIndex(of: "/") else { return "." }
        return slash == path.startIndex ? "/" : String(path[..<slash])
    }
}
