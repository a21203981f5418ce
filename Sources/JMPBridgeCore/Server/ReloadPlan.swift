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
        // Line numbers say where a section was written, not what it asks for: a route added above
        // the gateway's section moves it without changing it.
        if old.listeners.map(\.withoutLine) != new.listeners.map(\.withoutLine) { self.needRestart.append("listen") }
        if old.control != new.control { self.needRestart.append("control") }
        if old.limits != new.limits { self.needRestart.append("limits") }
        if old.linger != new.linger { self.needRestart.append("linger") }
        if old.exitIdleTime != new.exitIdleTime { self.needRestart.append("exit-idle-time") }
        if old.jwt?.withoutLine != new.jwt?.withoutLine { self.needRestart.append("jwt") }
        if old.gateway?.withoutLine != new.gateway?.withoutLine { self.needRestart.append("gateway") }
        if old.metrics != new.metrics { self.needRestart.append("metrics") }
        for name in new.routes.keys.sorted() where old.routes[name] == nil {
            self.added.append(name)
        }
        for name in old.routes.keys.sorted() {
            if new.routes[name] == nil {
                self.removed.append(name)
            } else if new.routes[name]?.withoutLine != old.routes[name]?.withoutLine {
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

extension RouteConfiguration {
    /// The same route without the line it was read from: a route that only moved is unchanged.
    var withoutLine: Self {
        var copy = self
        copy.line = nil
        return copy
    }
}

extension ListenerConfiguration {
    /// The same listener without the line it was read from, for comparing what two files ask for.
    var withoutLine: Self {
        var copy = self
        copy.line = nil
        return copy
    }
}

extension JWTConfiguration {
    /// The same section without the line it was read from.
    var withoutLine: Self {
        var copy = self
        copy.line = nil
        return copy
    }
}

extension GatewayConfiguration {
    /// The same section without the lines it and its listener were read from.
    var withoutLine: Self {
        var copy = self
        copy.line = nil
        copy.controllerLine = nil
        copy.routerLine = nil
        copy.listener = copy.listener.withoutLine
        return copy
    }
}
