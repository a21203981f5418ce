import Logging
import Testing

@testable import JMPSystemd

#if canImport(Glibc)
    import Glibc
#endif

@Suite("talking to the service manager")
struct JMPSystemdTests {
    @Test("journal priorities follow sd-daemon(3)")
    func priorities() {
        #expect(JournalLogHandler.priority(of: .critical) == 2)
        #expect(JournalLogHandler.priority(of: .error) == 3)
        #expect(JournalLogHandler.priority(of: .warning) == 4)
        #expect(JournalLogHandler.priority(of: .notice) == 5)
        #expect(JournalLogHandler.priority(of: .info) == 6)
        #expect(JournalLogHandler.priority(of: .debug) == 7)
        #expect(JournalLogHandler.priority(of: .trace) == 7)
    }

    @Test("stderr is the journal only when JOURNAL_STREAM names its device and inode")
    func journalStream() {
        // The variable's value is passed in: tests run in parallel and share the environment.
        var status = stat()
        #expect(fstat(STDERR_FILENO, &status) == 0)
        #expect(JournalLogHandler.isStandardErrorJournal(journalStream: "\(status.st_dev):\(status.st_ino)"))
        #expect(!JournalLogHandler.isStandardErrorJournal(journalStream: "\(status.st_dev):\(status.st_ino + 1)"))
        #expect(!JournalLogHandler.isStandardErrorJournal(journalStream: "garbage"))
        #expect(!JournalLogHandler.isStandardErrorJournal(journalStream: nil))
    }

    @Test("store and socket names: printable ASCII without ':'")
    func storeNames() {
        #expect(ServiceNotifier.isValidStoreName("pty.console"))
        #expect(ServiceNotifier.isValidStoreName("grpc-tls_2"))
        #expect(!ServiceNotifier.isValidStoreName(""))
        #expect(!ServiceNotifier.isValidStoreName("a:b"))
        #expect(!ServiceNotifier.isValidStoreName("a b"))
        #expect(!ServiceNotifier.isValidStoreName(String(repeating: "x", count: 256)))
    }

    @Test("passed descriptors are claimed once, by name or prefix")
    func claiming() {
        let passed = PassedDescriptors([
            PassedDescriptor(descriptor: 3, name: "grpc"),
            PassedDescriptor(descriptor: 4, name: "grpc"),
            PassedDescriptor(descriptor: 5, name: "pty.console"),
            PassedDescriptor(descriptor: 6, name: "control"),
        ])
        #expect(passed.contains(name: "grpc"))
        #expect(passed.claim(name: "grpc").map(\.descriptor) == [3, 4])
        #expect(passed.claim(name: "grpc").isEmpty)
        #expect(passed.claim(prefix: "pty.").map(\.name) == ["pty.console"])
        #expect(passed.unclaimedNames == ["control"])
        #expect(!passed.isEmpty)
    }

    @Test("a listening Unix socket is recognised, with its family")
    func socketKinds() throws {
        let listening = socket(AF_UNIX, Int32(SOCK_STREAM.rawValue), 0)
        #expect(listening >= 0)
        defer { close(listening) }
        var address = sockaddr_un()
        address.sun_family = sa_family_t(AF_UNIX)  // abstract socket: no file to clean up
        #expect(
            withUnsafePointer(to: &address) {
                $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                    bind(listening, $0, socklen_t(MemoryLayout<sa_family_t>.size))  // autobind
                }
            } == 0
        )
        #expect(listen(listening, 1) == 0)
        let entry = PassedDescriptor(descriptor: listening, name: "grpc")
        #expect(entry.isListeningStreamSocket())
        #expect(entry.socketFamily == AF_UNIX)

        var pipeEnds: [CInt] = [0, 0]
        #expect(pipe(&pipeEnds) == 0)
        defer { for end in pipeEnds { close(end) } }
        let notASocket = PassedDescriptor(descriptor: pipeEnds[0], name: "x")
        #expect(!notASocket.isListeningStreamSocket())
        #expect(notASocket.socketFamily == nil)
    }

    @Test("without NOTIFY_SOCKET every notification is a no-op")
    func withoutServiceManager() {
        let notifier = ServiceNotifier(logger: Logger(label: "test"), notifySocket: nil)
        #expect(!notifier.isEnabled)
        #expect(!notifier.store(descriptor: 0, name: "pty.console"))
        notifier.ready(status: "ok")
        #expect(notifier.watchdogInterval == nil)
    }
}
