import CJMPSystem
import Foundation
import JMPTargets
import Testing

@testable import JMPBridgeCore

/// Socket files are never reachable more widely than configured, and groups and users are
/// named the same way everywhere.
@Suite("Socket files and accounts")
struct SocketFileTests {
    private func mode(_ path: String) -> UInt32 {
        var status = stat()
        guard stat(path, &status) == 0 else { return 0o7777 }
        return UInt32(status.st_mode) & 0o777
    }

    @Test("a socket file is born with its mode, whatever the umask would give")
    func bornWithMode() throws {
        let directory = try makeTemporaryDirectory()
        defer { try? FileManager.default.removeItem(atPath: directory) }
        // Without the mode, bind(2) gives what the umask leaves (0755 under the usual 022): a
        // window in which the file is wider than configured if the mode is set only afterwards.
        let plain = jmp_listen_unix("\(directory)/plain.sock", 1, -1)
        defer { close(plain) }
        #expect(self.mode("\(directory)/plain.sock") == 0o777 & ~UnixSocketFile.umask)
        let born = jmp_listen_unix("\(directory)/born.sock", 1, 0o600)
        defer { close(born) }
        #expect(born >= 0)
        #expect(self.mode("\(directory)/born.sock") == 0o600 & ~UnixSocketFile.umask)
    }

    @Test("listen(path:mode:group:) ends with exactly the configured mode and group")
    func modeAndGroup() throws {
        let directory = try makeTemporaryDirectory()
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let path = "\(directory)/grpc.sock"
        let group = "\(getgid())"
        let socket = try UnixSocketFile.listen(path: path, mode: 0o660, group: group)
        defer { close(socket) }
        var status = stat()
        #expect(stat(path, &status) == 0)
        #expect(UInt32(status.st_mode) & 0o777 == 0o660)
        #expect(status.st_gid == getgid())
        // An existing socket is replaced; an unknown group fails and leaves no file behind.
        let again = try UnixSocketFile.listen(path: path, mode: nil, group: nil)
        close(again)
        #expect(throws: BridgeError("unix:\(directory)/x.sock: unknown group 'no-such-group-jmp'")) {
            _ = try UnixSocketFile.listen(path: "\(directory)/x.sock", mode: 0o660, group: "no-such-group-jmp")
        }
        #expect(access("\(directory)/x.sock", F_OK) != 0)
    }

    @Test("groups and users by name or by number, from one resolver")
    func accounts() {
        #expect(SystemAccounts.groupID("root") == 0)
        #expect(SystemAccounts.groupID("0") == 0)
        #expect(SystemAccounts.groupID("4711") == 4711)
        #expect(SystemAccounts.groupID("no-such-group-jmp") == nil)
        #expect(SystemAccounts.userID("root") == 0)
        #expect(SystemAccounts.userID("0") == 0)
        #expect(SystemAccounts.userID("no-such-user-jmp") == nil)
    }

    @Test("a listener's or a pty's group is checked with the file: names and numbers, unknown ones named")
    func configurationGroups() {
        expectError(
            "listen:\n  - address: unix:/x\n    group: no-such-group-jmp\n",
            line: 3,
            key: "listen[0].group",
            message: "unknown group 'no-such-group-jmp'"
        )
        expectError(
            "routes:\n  c:\n    pty: {link: /run/c, group: no-such-group-jmp}\n",
            line: 3,
            key: "routes.c.pty.group",
            message: "unknown group 'no-such-group-jmp'"
        )
        #expect(throws: Never.self) {
            _ = try ConfigurationLoader.parse(yaml: "listen:\n  - address: unix:/x\n    group: \"0\"\n", file: file)
            _ = try ConfigurationLoader.parse(yaml: "routes:\n  c:\n    pty: {link: /run/c, group: root}\n", file: file)
        }
    }
}
