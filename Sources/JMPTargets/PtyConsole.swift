import Logging
import NIOCore

#if canImport(Glibc)
    import Glibc
#endif

/// The console of a `pty:` route: a pty the bridge holds for its whole life (allocated, or taken
/// back from the service manager's file-descriptor store after a restart), a stable link to its
/// slave, and the ``ConsoleHub`` on its master.
public final class PtyConsole: RouteConsole {
    /// The hub every attachment of the route goes through; it owns the master.
    public let hub: ConsoleHub
    /// The pty.
    public let pty: PseudoTerminal
    /// The stable path pointing at the slave.
    public let link: String
    /// The pty was taken back from the store rather than allocated.
    public let restored: Bool
    /// The master is in the service manager's file-descriptor store, so the pty outlives this
    /// process and its link stays in place when the console closes for a shutdown.
    private let stored: Bool
    private let slot: ConsoleStoreSlot

    private init(
        hub: ConsoleHub,
        pty: PseudoTerminal,
        link: String,
        restored: Bool,
        stored: Bool,
        slot: ConsoleStoreSlot
    ) {
        self.hub = hub
        self.pty = pty
        self.link = link
        self.restored = restored
        self.stored = stored
        self.slot = slot
    }

    /// Takes back the pty in `slot` (a master that is no longer a pty is closed, dropped from the
    /// store and fails the open) or allocates a new one and stores its master; then points `link`
    /// at the slave, with `mode` and `group`, and starts the hub.
    public static func open(
        name: String,
        link: String,
        mode: UInt32?,
        group: String?,
        scrollback: Int,
        lagLimit: Int,
        slot: ConsoleStoreSlot,
        on eventLoop: any EventLoop,
        logger: Logger
    ) async throws -> PtyConsole {
        let (pty, stored) = try PseudoTerminal.open(keptIn: slot)
        let hub: ConsoleHub
        do {
            try ConsoleLink.install(link: link, target: pty.slavePath, mode: mode, group: group)
            hub = try await ConsoleHub.start(
                name: name,
                master: pty.master,
                on: eventLoop,
                scrollback: scrollback,
                lagLimit: lagLimit,
                logger: logger
            ).get()
        } catch {
            Glibc.close(pty.master)  // NIO owns the master only once the hub has started
            Glibc.close(pty.slaveKeeper)
            throw error
        }
        return PtyConsole(hub: hub, pty: pty, link: link, restored: slot.restored != nil, stored: stored, slot: slot)
    }

    /// Closes the hub (and with it the master) and the slave keeper. The link is removed unless
    /// the pty stays in the store for the next start; `forget` drops it from the store too.
    public func close(forget: Bool) async {
        try? await self.hub.close().get()
        if forget || !self.stored {
            ConsoleLink.remove(link: self.link, target: self.pty.slavePath)
        }
        if forget && self.stored {
            self.slot.remove()
        }
        Glibc.close(self.pty.slaveKeeper)
    }
}
