/// A console the bridge holds open for a route across streams, whatever its device
/// (``PtyConsole``, ``SerialConsole``): every attachment goes through its ``hub``.
public protocol RouteConsole: AnyObject, Sendable {
    /// The hub every attachment of the route goes through.
    var hub: ConsoleHub { get }
    /// Closes the console; every attachment is cut. `forget`: the route is gone for good, so
    /// nothing of the console is kept for a restart (its stored descriptor, a pty's link);
    /// otherwise (shutdown) a stored console stays in place for the next start.
    func close(forget: Bool) async
}
