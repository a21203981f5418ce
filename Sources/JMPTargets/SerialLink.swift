import CJMPSystem
import Logging
import NIOCore
import NIOPosix

#if canImport(Glibc)
    import Glibc
#endif

/// The pty link of a `serial:` route: a pty the bridge allocates (or takes back from the service
/// manager's file-descriptor store) and keeps for its whole life, with a stable symlink to its
/// slave, so that a program that opens a device path itself (Jumpstarter's PySerial driver,
/// picocom, minicom) reaches the serial console the bridge holds.
///
/// The master is one more attachment of the console's ``ConsoleHub``, on the hub's loop: the
/// device's output is written to the master (the program reads it from the slave), and what the
/// program writes to the slave is read from the master and written to the device. Only the
/// bridge ever has the device open, so a program opening and closing the link never touches the
/// device's modem lines or its line settings; the settings a program makes on the slave stay on
/// the pty.
///
/// Like every attachment the link is lag-limited: output the program does not take waits in the
/// pty and then in the bridge, and once more than the console's `lag-limit` bytes wait the hub
/// cuts the link. The link then drops what waits in the bridge, and the output, until the pty
/// has taken the write under way, and attaches again. The master is in packet mode, so the link
/// learns when the program flushes its input (PySerial does whenever it opens the port) and
/// drops what waited in the bridge when it did: a program opening the link gets fresh output,
/// not what piled up while nobody read, and all the device prints after the flush. When the
/// device goes away the link stays (programs keep their descriptor and see no hang-up); what they
/// type meanwhile is dropped, and output resumes once the device is back.
public final class SerialLink: ConsoleSubscriber {
    /// Input bytes from the link on their way to the device above which the master is not read.
    public static let inputHighWatermark = 64 * 1024
    /// Output bytes handed to the master at a time, at most: at most this much still reaches a
    /// program after it flushed its input.
    public static let batchSize = 16 * 1024

    /// The console the link is attached to.
    public let hub: ConsoleHub
    /// The pty.
    public let pty: PseudoTerminal
    /// The symlink to the slave.
    public let path: String
    /// The pty was taken back from the store rather than allocated.
    public let restored: Bool
    /// The master is in the service manager's file-descriptor store, so the pty outlives this
    /// process and its link stays in place when the link closes for a shutdown.
    private let stored: Bool
    private let slot: ConsoleStoreSlot
    private let logger: Logger
    private let state: NIOLoopBoundBox<State>

    private final class State {
        /// The master's channel, once it is set up.
        var channel: (any Channel)?
        /// The hub's id of the link's attachment, while it is attached.
        var subscription: UInt64?
        var attaching = false
        /// Cut for lagging: attach again once the write under way has completed.
        var lagged = false
        /// Output waiting for the pty to take the write under way.
        var pending = CircularBuffer<ByteBuffer>()
        var pendingBytes = 0
        /// Output handed to the master's channel and not yet taken by the pty (one batch).
        var inFlight = 0
        /// Input bytes on their way to the device.
        var inputInFlight = 0
        /// Input was dropped (the device is down) since the last input that was taken.
        var droppingInput = false
        var closed = false
        /// A status (a flush, most likely) waits in the master, seen before its channel read it:
        /// the bytes pending then, at the front of `pending`, which go if it is a flush. No batch
        /// is written until the channel has read it.
        var statusMark: Int?
        /// Flushes by the program, and the output they dropped, since start.
        var flushes = 0
        var flushedBytes = 0
    }

    private init(
        hub: ConsoleHub,
        pty: PseudoTerminal,
        path: String,
        restored: Bool,
        stored: Bool,
        slot: ConsoleStoreSlot,
        logger: Logger
    ) {
        self.hub = hub
        self.pty = pty
        self.path = path
        self.restored = restored
        self.stored = stored
        self.slot = slot
        self.logger = logger
        self.state = NIOLoopBoundBox.makeBoxSendingValue(State(), eventLoop: hub.eventLoop)
    }

    /// Takes back the pty in `slot` or allocates a new one (whose slave gets `settings`' speed, so
    /// that a program asking the link for its speed sees the device's) and stores its master;
    /// points `path` at the slave, with `mode` and `group`; starts reading the master on the
    /// hub's loop; and attaches to `hub` now and every time its device is connected again.
    public static func open(
        path: String,
        mode: UInt32?,
        group: String?,
        settings: SerialSettings,
        hub: ConsoleHub,
        slot: ConsoleStoreSlot,
        logger: Logger
    ) async throws -> SerialLink {
        let (pty, stored) = try PseudoTerminal.open(keptIn: slot)
        if slot.restored == nil { Self.mirror(settings, on: pty.slaveKeeper) }
        // Packet mode: the master learns when the program flushes what waits for it.
        guard jmp_set_packet_mode(pty.master) == 0 else {
            let reason = PseudoTerminal.errnoText()
            Glibc.close(pty.master)
            Glibc.close(pty.slaveKeeper)
            if !stored { ConsoleLink.remove(link: path, target: pty.slavePath) }
            throw PseudoTerminal.SetupError(description: "cannot put the link's pty in packet mode: \(reason)")
        }
        let link = SerialLink(
            hub: hub,
            pty: pty,
            path: path,
            restored: slot.restored != nil,
            stored: stored,
            slot: slot,
            logger: logger
        )
        do {
            try ConsoleLink.install(link: path, target: pty.slavePath, mode: mode, group: group)
            try await NIOPipeBootstrap(group: hub.eventLoop)
                .channelOption(.autoRead, value: true)
                .channelInitializer { channel in
                    channel.eventLoop.makeCompletedFuture {
                        try channel.pipeline.syncOperations.addHandler(SerialLinkHandler(link: link))
                    }
                }
                .takingOwnershipOfDescriptor(inputOutput: pty.master)
                .map { channel in link.state.value.channel = channel }
                .get()
        } catch {
            Glibc.close(pty.master)  // NIO owns the master only once its channel is up
            Glibc.close(pty.slaveKeeper)
            // A pty only this process held is gone now: leave no symlink to it.
            if !stored { ConsoleLink.remove(link: path, target: pty.slavePath) }
            throw error
        }
        hub.onDeviceConnected { [weak link] in link?.attach() }
        return link
    }

    /// Stops the link: detaches it and closes the master and the slave keeper. The symlink is
    /// removed unless the pty stays in the store for the next start; `forget` drops it from the
    /// store too.
    public func close(forget: Bool) async {
        let channel = try? await self.hub.eventLoop.submit { () -> (any Channel)? in
            let state = self.state.value
            state.closed = true
            if let id = state.subscription { self.hub.detach(id) }
            state.subscription = nil
            let channel = state.channel
            state.channel = nil
            return channel
        }.get()
        try? await channel?.close().get()
        if forget || !self.stored {
            ConsoleLink.remove(link: self.path, target: self.pty.slavePath)
        }
        if forget && self.stored {
            self.slot.remove()
        }
        Glibc.close(self.pty.slaveKeeper)
    }

    /// Sets the speed of a fresh pty's slave to the device's; a rate without a `B` constant
    /// leaves the pty's own.
    private static func mirror(_ settings: SerialSettings, on slave: CInt) {
        var attributes = termios()
        guard let speed = SerialSettings.standardRates[settings.baud], tcgetattr(slave, &attributes) == 0 else {
            return
        }
        cfsetispeed(&attributes, speed)
        cfsetospeed(&attributes, speed)
        _ = tcsetattr(slave, TCSANOW, &attributes)
    }

    /// How often the program flushed its input and what that dropped, and the input on its way,
    /// read on the hub's loop.
    public func status() -> EventLoopFuture<SerialLinkStatus> {
        self.hub.eventLoop.submit {
            let state = self.state.value
            return SerialLinkStatus(
                flushes: state.flushes,
                flushedBytes: state.flushedBytes,
                inputInFlight: state.inputInFlight
            )
        }
    }

    // MARK: - On the hub's loop

    /// Attaches to the hub unless the link is attached, attaching, waiting for its reader after a
    /// cut, or closed. Output from before is not replayed: the link is a device, not a viewer.
    private func attach() {
        let state = self.state.value
        guard !state.closed, state.channel != nil, state.subscription == nil, !state.attaching, !state.lagged else {
            return
        }
        state.attaching = true
        self.hub.attach(self).whenComplete { result in
            let state = self.state.value
            state.attaching = false
            switch result {
            case .success(let attachment):
                if state.closed {
                    self.hub.detach(attachment.id)
                } else {
                    state.subscription = attachment.id
                }
            case .failure:
                break  // the device went away again; its next connection attaches the link
            }
        }
    }

    /// What the program on the link typed: written to the device. While more than
    /// ``inputHighWatermark`` bytes are on their way the master is not read, so the program's
    /// writes wait in the pty; input the device cannot take (it is down) is dropped.
    func input(_ bytes: ByteBuffer, from channel: any Channel) {
        let state = self.state.value
        let count = bytes.readableBytes
        state.inputInFlight += count
        if state.inputInFlight >= Self.inputHighWatermark {
            try? channel.syncOptions?.setOption(.autoRead, value: false)
        }
        self.hub.write(bytes).whenComplete { result in
            let state = self.state.value
            let held = state.inputInFlight >= Self.inputHighWatermark
            state.inputInFlight -= count
            if held, state.inputInFlight < Self.inputHighWatermark, !state.closed {
                try? channel.syncOptions?.setOption(.autoRead, value: true)
            }
            switch result {
            case .success:
                state.droppingInput = false
            case .failure(let error):
                guard !state.droppingInput, !state.closed else { return }
                state.droppingInput = true
                self.logger.notice(
                    "input on the serial link dropped: the device cannot take it",
                    metadata: ["route": "\(self.hub.name)", "link": "\(self.path)", "reason": "\(error)"]
                )
            }
        }
    }

    /// The master failed (it never should: the bridge keeps a descriptor of the slave open).
    func masterFailed(_ error: any Error) {
        self.logger.error(
            "the serial link's pty failed; the link no longer works",
            metadata: ["route": "\(self.hub.name)", "link": "\(self.path)", "error": "\(error)"]
        )
    }

    /// The master's channel read a status byte: `flushRead`, the program flushed its input
    /// (PySerial does when it opens the port), so the output that waited for it in the bridge
    /// when it did is stale too, and goes the same way. Then output flows again.
    func statusReported(flushRead: Bool) {
        let state = self.state.value
        let mark = state.statusMark ?? state.pendingBytes
        state.statusMark = nil
        if flushRead {
            var left = mark
            while left > 0, var bytes = state.pending.popFirst() {
                if bytes.readableBytes > left {
                    bytes.moveReaderIndex(forwardBy: left)
                    state.pending.prepend(bytes)
                    left = 0
                } else {
                    left -= bytes.readableBytes
                }
            }
            let dropped = mark - left
            state.pendingBytes -= dropped
            state.flushes += 1
            state.flushedBytes += dropped
            if dropped > 0, let id = state.subscription {
                self.hub.acknowledgeOnLoop(id, count: dropped)
            }
        }
        self.writePending()
    }

    /// Marks the output waiting now if the master holds a status its channel has not read yet.
    /// The channel reads the master when the loop next polls it, which can be after the device
    /// printed more or after further batches: without this look, output the device printed
    /// after the program flushed would go with the stale, and output the program flushed away
    /// would still be written. The status stays in the master for the channel to read (only it
    /// tells a flush from other news, and NIO expects what woke it to be there). One `poll` per
    /// device read and per batch. A second flush before the channel reads the first makes one
    /// status with it: what waited at the first goes.
    private func markUnreadStatus(_ channel: any Channel) {
        let state = self.state.value
        guard state.statusMark == nil, channel.isActive else { return }  // inactive: the descriptor is closed
        if jmp_packet_status_waits(self.pty.master) == 1 {
            state.statusMark = state.pendingBytes
            channel.read()  // even while input is held back
        }
    }

    /// Hands pending output to the master's channel, at most ``batchSize`` bytes at a time (a
    /// device read that does not fit is split, without a copy), unless a batch is under way or a
    /// status waits to be read; each batch first looks for one (``markUnreadStatus(_:)``), so
    /// what a flush lets through is the write under way alone. `looked`: the caller just did.
    private func writePending(looked: Bool = false) {
        let state = self.state.value
        guard state.inFlight == 0, state.pendingBytes > 0, let channel = state.channel else { return }
        if !looked { self.markUnreadStatus(channel) }
        guard state.statusMark == nil else { return }
        let subscription = state.subscription
        var count = 0
        var last: EventLoopFuture<Void>?
        while count < Self.batchSize, var bytes = state.pending.popFirst() {
            let room = Self.batchSize - count
            if bytes.readableBytes > room, let head = bytes.readSlice(length: room) {
                state.pending.prepend(bytes)  // the rest waits for the next batch
                bytes = head
            }
            count += bytes.readableBytes
            last = channel.write(bytes)
        }
        state.pendingBytes -= count
        state.inFlight = count
        channel.flush()
        let written = count
        last?.whenComplete { result in
            let state = self.state.value
            state.inFlight = 0
            if case .success = result, let subscription {
                self.hub.acknowledgeOnLoop(subscription, count: written)
            }
            if state.lagged {
                state.lagged = false
                self.logger.notice(
                    "serial link caught up; its output resumes",
                    metadata: ["route": "\(self.hub.name)", "link": "\(self.path)"]
                )
                self.attach()
            } else {
                self.hub.eventLoop.execute { self.writePending() }
            }
        }
    }

    // MARK: - ConsoleSubscriber (on the hub's loop)

    public func consoleOutput(_ bytes: ByteBuffer) {
        let state = self.state.value
        guard let channel = state.channel, state.subscription != nil else { return }
        // A flush the program made before this output reached the bridge drops what waited, not this.
        self.markUnreadStatus(channel)
        state.pending.append(bytes)
        state.pendingBytes += bytes.readableBytes
        self.writePending(looked: true)
    }

    public func consoleCut(_ reason: ConsoleUnavailable) {
        let state = self.state.value
        state.subscription = nil
        // What waited was for this attachment; the hub no longer counts it.
        state.pending.removeAll()
        state.pendingBytes = 0
        if state.statusMark != nil { state.statusMark = 0 }
        // The device went away or the console closed: the next device connection attaches again.
        guard reason.lagged, !state.closed else { return }
        self.logger.warning(
            "serial link fell behind; output is dropped until its reader has taken what the pty holds",
            metadata: ["route": "\(self.hub.name)", "link": "\(self.path)"]
        )
        if state.inFlight == 0 {
            self.attach()
        } else {
            state.lagged = true
        }
    }
}
