import CJMPSystem
import Foundation
import JMPDoors
import JMPSystemd
import Logging
import Testing

@testable import JMPBridgeCore

/// A reload replaces a changed route's door while the old one is still open: the new door must
/// keep its socket file, and a passed (`systemd:`) door must come back.
@Suite("Local doors across a reload")
struct LocalDoorTests {
    init() {
        // The door loop refuses to start otherwise (jmp-bridge serve does this first thing).
        signal(SIGPIPE, SIG_IGN)
    }

    private func identity(_ path: String) -> (UInt64, UInt64)? {
        var status = stat()
        guard lstat(path, &status) == 0 else { return nil }
        return (UInt64(status.st_dev), UInt64(status.st_ino))
    }

    @Test("an old door closing after its successor was bound at the same path leaves the new file")
    func oldDoorLeavesTheNewFile() async throws {
        let directory = try makeTemporaryDirectory()
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let path = "\(directory)/door.sock"
        let loop = try DoorLoop(logger: Logger(label: "test"))
        let old = jmp_listen_unix(path, 8, 0o600)
        try #require(old >= 0)
        let oldFile = try #require(DoorSocketFile(boundAt: path))
        loop.add(
            Door(
                route: "door",
                listener: old,
                address: "unix:\(path)",
                targetPath: "\(directory)/t",
                splice: true,
                socketFile: oldFile
            )
        )
        // The route's new door, bound as a reload binds it: before the loop closes the old one.
        let new = jmp_listen_unix(path, 8, 0o600)
        try #require(new >= 0)
        defer { close(new) }
        let newIdentity = try #require(self.identity(path))
        loop.remove(route: "door")
        await loop.stop()  // handles the removal first
        let after = self.identity(path)
        #expect(after.map { $0 == newIdentity } == true, "the old door removed its successor's socket file")
        // And a door whose file is still its own removes it.
        let alone = try DoorLoop(logger: Logger(label: "test"))
        let otherPath = "\(directory)/other.sock"
        let other = jmp_listen_unix(otherPath, 8, 0o600)
        try #require(other >= 0)
        alone.add(
            Door(
                route: "other",
                listener: other,
                address: "unix:\(otherPath)",
                targetPath: "\(directory)/t",
                splice: true,
                socketFile: try #require(DoorSocketFile(boundAt: otherPath))
            )
        )
        alone.remove(route: "other")
        await alone.stop()
        #expect(self.identity(otherPath) == nil)
    }

    @Test("a passed door that a reload replaces is served again, from the same passed socket")
    func passedDoorComesBack() async throws {
        let directory = try makeTemporaryDirectory()
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let path = "\(directory)/passed.sock"
        let passedSocket = jmp_listen_unix(path, 8, 0o600)
        try #require(passedSocket >= 0)
        let doors = LocalDoors(
            passed: PassedDescriptors([PassedDescriptor(descriptor: passedSocket, name: "door")]),
            idleExit: nil,
            logger: Logger(label: "test")
        )
        var route = RouteConfiguration(name: "door", target: .unix(path: "\(directory)/no-target.sock"))
        route.local = LocalDoorConfiguration(address: .systemd(name: "door"))
        try doors.open(route)
        // What a reload does with a changed route.
        doors.remove(["door"])
        try doors.open(route)

        // Someone accepts on the passed socket: the door takes the connection, finds no target
        // and closes it (a door nobody served would leave the client waiting in the backlog).
        let client = socket(AF_UNIX, Int32(SOCK_STREAM.rawValue), 0)
        try #require(client >= 0)
        defer { close(client) }
        var timeout = timeval(tv_sec: 10, tv_usec: 0)
        setsockopt(client, SOL_SOCKET, SO_RCVTIMEO, &timeout, socklen_t(MemoryLayout<timeval>.size))
        var address = sockaddr_un()
        address.sun_family = sa_family_t(AF_UNIX)
        withUnsafeMutableBytes(of: &address.sun_path) { bytes in
            for (index, byte) in path.utf8.enumerated() { bytes[index] = byte }
        }
        let connected = withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                connect(client, $0, socklen_t(MemoryLayout<sockaddr_un>.size))
            }
        }
        try #require(connected == 0)
        var byte: UInt8 = 0
        let received = recv(client, &byte, 1, 0)
        #expect(received == 0, "the door did not take the connection (recv: \(received), errno \(errno))")
        await doors.stop()
        // The passed socket is closed with the doors.
        #expect(fcntl(passedSocket, F_GETFD) == -1)
    }
}
