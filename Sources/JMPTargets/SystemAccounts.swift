#if canImport(Glibc)
    import Glibc
#endif

/// Users and groups named in the configuration, by name or by number: the one resolver for a
/// listener's `group`, a pty's `group` and a listener's `peer` lists, used both when the file is
/// checked and when sockets and ptys are set up. Names go through the system's databases (NSS)
/// with the reentrant calls, so any thread may ask.
public enum SystemAccounts {
    /// A group's id: a decimal number as it is, else the group of that name; nil if there is none.
    public static func groupID(_ nameOrNumber: String) -> gid_t? {
        if let number = gid_t(nameOrNumber) { return number }
        return Self.lookUp { buffer, size, result in
            var entry = group()
            let status = getgrnam_r(nameOrNumber, &entry, buffer, size, &result)
            return (status, result == nil ? nil : entry.gr_gid)
        }
    }

    /// A user's id: a decimal number as it is, else the user of that name; nil if there is none.
    public static func userID(_ nameOrNumber: String) -> uid_t? {
        if let number = uid_t(nameOrNumber) { return number }
        return Self.lookUp { buffer, size, result in
            var entry = passwd()
            let status = getpwnam_r(nameOrNumber, &entry, buffer, size, &result)
            return (status, result == nil ? nil : entry.pw_uid)
        }
    }

    /// Runs a `get*nam_r` call with a buffer that grows while the call says ERANGE.
    private static func lookUp<Entry, ID>(
        _ call: (UnsafeMutablePointer<CChar>, Int, inout UnsafeMutablePointer<Entry>?) -> (CInt, ID?)
    ) -> ID? {
        var size = 1024
        while size <= 1 << 20 {
            let buffer = UnsafeMutablePointer<CChar>.allocate(capacity: size)
            defer { buffer.deallocate() }
            var result: UnsafeMutablePointer<Entry>?
            let (status, id) = call(buffer, size, &result)
            if status == ERANGE {
                size *= 2
                continue
            }
            return status == 0 ? id : nil
        }
        return nil
    }
}
