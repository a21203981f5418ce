import JMPDoors
import JMPTLS
import JMPTargets
import NIOCore

/// The reply to a `status` request: a `bridge …` line with the state and stream counters, one
/// `listener …` line per bound gRPC socket (in configuration order), then one `route …` line per
/// route, sorted by name, then the exporter gateway's lines if there is one (`gateway …`,
/// `upstream …`, `listen …`, `relay …`), every item `key=value` (values with spaces quoted, as in the log). The
/// format is documented in jmp-bridge(8) and is stable: programs read it.
enum StatusReport {
    static func make(environment: BridgeContext, on eventLoop: any EventLoop) -> EventLoopFuture<String> {
        let statistics = environment.statistics
        let table = environment.routes.withLockedValue { $0 }
        let consoles = environment.consoles.withLockedValue { $0 }
        let links = environment.serialLinks.withLockedValue { $0 }
        var headerItems: [(String, String)] = [
            ("bridge", "jmp-bridge"),
            ("state", environment.state.withLockedValue { $0 }.rawValue),
            ("default-route", table.defaultRoute ?? "none"),
            ("streams-active", "\(statistics.activeStreams.load(ordering: .relaxed))"),
            ("streams-total", "\(statistics.totalStreams.load(ordering: .relaxed))"),
            ("streams-failed", "\(statistics.failedStreams.load(ordering: .relaxed))"),
            ("bytes-to-targets", "\(statistics.bytesToTargets.load(ordering: .relaxed))"),
            ("bytes-from-targets", "\(statistics.bytesFromTargets.load(ordering: .relaxed))"),
        ]
        if let metrics = environment.metricsAddress.withLockedValue({ $0 }) {
            headerItems.append(("metrics", "\(metrics)"))
        }
        let header = Self.line(headerItems)
        // The TLS contexts (served certificate, client CA), by configured listener address.
        var contexts: [String: TLSContextBox] = [:]
        for tls in environment.tlsContexts.withLockedValue({ $0 }) { contexts[tls.listener] = tls }
        let listeners = environment.listeners.withLockedValue { $0 }.map { listener in
            var items = [
                ("listener", "\(listener.address)"),
                ("configured", "\(listener.configured)"),
                ("tls", listener.tls ? "on" : "off"),
                ("auth", listener.auth.rawValue),
            ]
            if listener.tls, let tls = contexts["\(listener.configured)"] {
                items.append(("certificate-expires", tls.validity.expires))
                if let authority = tls.clientAuthority { items.append(("client-ca-expires", authority.expires)) }
            }
            return Self.line(items)
        }
        let routes = table.routes.values.sorted { $0.name < $1.name }
        let doors = environment.doorStatistics()
        let lines = routes.map { route -> EventLoopFuture<String> in
            var items: [(String, String)] = [("route", route.name)]
            switch route.target {
            case .unix(let path):
                items += [("type", "unix"), ("target", path)]
                if let local = route.local {
                    let door = doors[route.name] ?? DoorStatistics()
                    items += [
                        ("door", "\(local.address)"),
                        ("door-connections", "\(door.active)"),
                        ("door-total", "\(door.total)"),
                        ("door-refused", "\(door.refused)"),
                    ]
                }
            case .pty(let pty):
                items += [("type", "pty"), ("target", pty.link)]
            case .serial(let serial):
                items += [("type", "serial"), ("target", serial.device), ("settings", "\(serial.settings)")]
                if let link = serial.link { items.append(("link", link.path)) }
            }
            guard route.target.isConsole else { return eventLoop.makeSucceededFuture(Self.line(items)) }
            guard let hub = consoles[route.name] else {
                return eventLoop.makeSucceededFuture(Self.line(items + [("state", "down"), ("reason", "not open")]))
            }
            let target = items
            let link = links[route.name]?.status().map(Optional.some) ?? hub.eventLoop.makeSucceededFuture(nil)
            return hub.status().and(link).hop(to: eventLoop).map { status, link in
                var items = target
                items.append(("state", status.up ? "up" : "down"))
                if let reason = status.downReason { items.append(("reason", reason)) }
                items += [
                    ("attachments", "\(status.attachments)"),
                    ("output-bytes", "\(status.outputBytes)"),
                    ("input-bytes", "\(status.inputBytes)"),
                    ("cuts", "\(status.cuts)"),
                ]
                if let link {
                    items += [
                        ("link-flushes", "\(link.flushes)"),
                        ("link-flushed-bytes", "\(link.flushedBytes)"),
                        ("link-input-waiting", "\(link.inputInFlight)"),
                    ]
                }
                return Self.line(items)
            }
        }
        let gateway = environment.gateway.withLockedValue { $0 }.map { bound in
            var lines = bound.gateway.statusItems(listener: "\(bound.address)")
            // Known only where the gateway's listener serves TLS.
            if let tls = contexts["\(bound.configured)"], !lines.isEmpty {
                lines[0].append(("certificate-expires", tls.validity.expires))
                if let authority = tls.clientAuthority { lines[0].append(("client-ca-expires", authority.expires)) }
            }
            return lines.map(Self.line).joined()
        }
        return EventLoopFuture.whenAllSucceed(lines, on: eventLoop).map { lines in
            header + listeners.joined() + lines.joined() + (gateway ?? "")
        }
    }

    /// `key=value key="value with spaces"`, newline-terminated.
    static func line(_ items: [(String, String)]) -> String {
        items.map { key, value in
            let plain = !value.isEmpty && !value.contains { $0 == " " || $0 == "\"" || $0 == "\\" || $0 == "=" }
            if plain { return "\(key)=\(value)" }
            var escaped = ""
            for character in value {
                if character == "\\" || character == "\"" { escaped.append("\\") }
                escaped.append(character)
            }
            return "\(key)=\"\(escaped)\""
        }.joined(separator: " ") + "\n"
    }
}
