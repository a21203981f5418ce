/// A console device's entry in the service manager's file-descriptor store, which keeps the device
/// open across a restart of the bridge: the descriptor the store passed back at start, if any, and
/// how to put a descriptor in or drop the stored one. Without a service manager storing does
/// nothing (and says so by returning false).
public struct ConsoleStoreSlot: Sendable {
    /// The entry's name in the store (`pty.ROUTE`, `serial.ROUTE`).
    public let name: String
    /// The descriptor the service manager passed back at start under ``name``, if it did; the
    /// console it is given to owns it.
    public let restored: CInt?
    private let put: @Sendable (_ descriptor: CInt, _ name: String) -> Bool
    private let drop: @Sendable (_ name: String) -> Void

    /// Creates a slot. `store` hands a duplicate of a descriptor to the store under a name and
    /// says whether it was taken; `remove` drops every stored descriptor of a name.
    public init(
        name: String,
        restored: CInt?,
        store: @escaping @Sendable (_ descriptor: CInt, _ name: String) -> Bool,
        remove: @escaping @Sendable (_ name: String) -> Void
    ) {
        self.name = name
        self.restored = restored
        self.put = store
        self.drop = remove
    }

    /// Hands a duplicate of `descriptor` to the store; false if it was not kept.
    @discardableResult
    public func store(_ descriptor: CInt) -> Bool {
        self.put(descriptor, self.name)
    }

    /// Drops the stored descriptor: the store closes its copy.
    public func remove() {
        self.drop(self.name)
    }

    /// Replaces a stored descriptor that went stale (a device unplugged and opened again).
    public func replace(with descriptor: CInt) {
        self.remove()
        self.store(descriptor)
    }
}
