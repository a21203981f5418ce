/// What a reload changes: the difference between the configuration in force and a new one, worked
/// out without touching anything, for ``BridgeServer/reload(to:)`` to apply.
///
/// Routes are applied at once; every other top-level key that differs needs a restart.
public struct ReloadPlan: Sendable, Equatable {
    /// Routes only the new configuration has, sorted by name.
    public var added: [String] = []
    /// Routes only the old configuration has, sorted by name.
    public var removed: [String] = []
    /// Routes both have, with a different target or door, sorted by name.
    public var changed: [String] = []
    /// Top-level keys that differ but are not applied until a restart, in configuration order.
    public var needRestart: [String] = []
    /// The configuration in force once the plan is applied: the old one with the new routes,
    /// default route and source.
    public var result: BridgeConfiguration

    /// Compares `old` (in force) with `new`.
    public init(from old: BridgeConfiguration, to new: BridgeConfiguration) {
        if old.listeners != new.listeners { self.needRestart.append("listen") }
        if old.limits != new.limits { self.needRestart.append("limits") }
        if old.linger != new.linger { self.needRestart.append("linger") }
        if old.exitIdleTime != new.exitIdleTime { self.needRestart.append("exit-idle-time") }
        if old.gateway != new.gateway { self.needRestart.append("gateway") }
        if old.metrics != new.metrics { self.needRestart.append("metrics") }
        for name in new.routes.keys.sorted() where old.routes[name] == nil {
            self.added.append(name)
        }
        for name in old.routes.keys.sorted() {
            if new.routes[name] == nil {
                self.removed.append(name)
            } else if new.routes[name] != old.routes[name] {
                self.changed.append(name)
            }
        }
        var result = old
        result.routes = new.routes
        result.defaultRoute = new.defaultRoute
        result.source = new.source
        self.result = result
    }
}
