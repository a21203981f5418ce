import CSystemd
import Synchronization

#if canImport(Glibc)
    import Glibc
#endif

/// The descriptors passed by the service manager, each claimed by the part of the bridge that
/// uses it (a listener, a console taking back its pty); what nobody claims is a mismatch between
/// the units and the configuration.
public final class PassedDescriptors: Sendable {
    private let remaining: Mutex<[PassedDescriptor]>

    /// Descriptors given explicitly (tests; none by default).
    public init(_ descriptors: [PassedDescriptor] = []) {
        self.remaining = Mutex(descriptors)
    }

    /// Takes the descriptors the service manager passed to this process, via
    /// `sd_listen_fds_with_names`, and unsets `LISTEN_FDS`, `LISTEN_PID` and `LISTEN_FDNAMES` so
    /// that no child inherits them. The descriptors are close-on-exec afterwards.
    public static func fromEnvironment() throws(SystemdError) -> PassedDescriptors {
        var names: UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>?
        let count = sd_listen_fds_with_names(1, &names)
        guard count >= 0 else {
            throw SystemdError("cannot take the sockets passed by the service manager: \(errnoText(-count))")
        }
        var descriptors: [PassedDescriptor] = []
        for index in 0..<Int(count) {
            let name = names?[index].map { String(cString: $0) } ?? "unknown"
            descriptors.append(PassedDescriptor(descriptor: SD_LISTEN_FDS_START + CInt(index), name: name))
        }
        if let names {
            for index in 0..<Int(count) { free(names[index]) }
            free(names)
        }
        return PassedDescriptors(descriptors)
    }

    /// Every descriptor not yet claimed.
    public var unclaimed: [PassedDescriptor] { self.remaining.withLock { $0 } }

    /// The names of the descriptors not yet claimed, for messages.
    public var unclaimedNames: [String] { self.unclaimed.map(\.name) }

    /// True when no descriptor was passed or every one has been claimed.
    public var isEmpty: Bool { self.remaining.withLock { $0.isEmpty } }

    /// Claims every descriptor called `name` (a socket unit may pass several under one name).
    public func claim(name: String) -> [PassedDescriptor] {
        self.remaining.withLock { remaining in
            let claimed = remaining.filter { $0.name == name }
            remaining.removeAll { $0.name == name }
            return claimed
        }
    }

    /// Claims every descriptor whose name starts with `prefix`.
    public func claim(prefix: String) -> [PassedDescriptor] {
        self.remaining.withLock { remaining in
            let claimed = remaining.filter { $0.name.hasPrefix(prefix) }
            remaining.removeAll { $0.name.hasPrefix(prefix) }
            return claimed
        }
    }

    /// True when at least one unclaimed descriptor is called `name`.
    public func contains(name: String) -> Bool {
        self.remaining.withLock { $0.contains { $0.name == name } }
    }
}

/// The text of an errno value.
func errnoText(_ code: CInt) -> String { String(cString: strerror(code)) }
