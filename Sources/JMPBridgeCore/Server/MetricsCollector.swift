import JMPDoors
import JMPGateway
import JMPMetrics
import JMPTargets
import NIOCore

/// Renders a scrape of the metrics endpoint: the data path's metrics are current already; the
/// facts other parts keep (console hubs, doors, TLS certificates, the gateway) are read now and applied first.
struct MetricsCollector: Sendable {
    let environment: BridgeContext
    let metrics: BridgeMetrics

    /// The Prometheus text of every metric, read now.
    func scrape(on eventLoop: any EventLoop) -> EventLoopFuture<[UInt8]> {
        // Every configured route has its series from the first scrape on, at zero until used.
        self.metrics.keepRoutes(Set(self.environment.routes.withLockedValue { $0.routes.keys }))
        let hubs = self.environment.consoles.withLockedValue { $0 }
        let statuses = hubs.map { route, hub in hub.status().map { (route, $0) } }
        return EventLoopFuture.whenAllSucceed(statuses, on: eventLoop).map { consoles in
            for (route, status) in consoles { self.apply(route: route, console: status) }
            for (route, door) in self.environment.doorStatistics() { self.apply(route: route, door: door) }
            let certificates = self.environment.tlsContexts.withLockedValue { $0 }
            for tls in certificates {
                self.metrics.set(
                    .certificateExpiry,
                    labels: [("listener", tls.listener)],
                    to: Int(tls.validity.notValidAfter)
                )
            }
            // One series per CA file, however many listeners use it.
            self.metrics.setSeries(
                .caCertificateExpiry,
                self.environment.authorities.map { (labels: [("file", $0.file)], value: Int($0.notValidAfter)) }
            )
            if let gateway = self.environment.gateway.withLockedValue({ $0 }) {
                self.apply(gateway.gateway.metricsSnapshot())
            }
            return self.metrics.render()
        }
    }

    private func apply(route: String, console status: ConsoleStatus) {
        let labels = [("route", route)]
        self.metrics.set(.consoleUp, labels: labels, to: status.up ? 1 : 0)
        self.metrics.set(.consoleAttachments, labels: labels, to: status.attachments)
        self.metrics.set(.consoleScrollback, labels: labels, to: status.scrollbackBytes)
        self.metrics.advance(.consoleCuts, labels: labels, to: status.cuts)
        self.metrics.advance(.consoleReopens, labels: labels, to: max(status.deviceConnects - 1, 0))
        self.metrics.advance(.consoleOutput, labels: labels, to: status.outputBytes)
        self.metrics.advance(.consoleInput, labels: labels, to: status.inputBytes)
    }

    private func apply(route: String, door: DoorStatistics) {
        let labels = [("route", route)]
        self.metrics.set(.doorActive, labels: labels, to: door.active)
        self.metrics.advance(.doorTotal, labels: labels, to: door.total)
        self.metrics.advance(.doorRefused, labels: labels, to: door.refused)
        self.metrics.advance(.doorBytes, labels: labels + [("direction", "to_target")], to: door.bytesToTarget)
        self.metrics.advance(.doorBytes, labels: labels + [("direction", "from_target")], to: door.bytesFromTarget)
    }

    private func apply(_ gateway: GatewayMetricsSnapshot) {
        self.metrics.set(.gatewayRelaysActive, to: gateway.relaysActive)
        self.metrics.advance(.gatewayRelaysTotal, to: gateway.relaysTotal)
        self.metrics.advance(.gatewayControllerCalls, to: gateway.controllerCalls)
        self.metrics.advance(.gatewayRefusedTokens, to: gateway.refusedTokens)
        self.metrics.advance(.gatewayRetriedCalls, to: gateway.retriedCalls)
        self.metrics.advance(.gatewayRelayBytes, labels: [("direction", "to_router")], to: gateway.bytesToRouter)
        self.metrics.advance(.gatewayRelayBytes, labels: [("direction", "from_router")], to: gateway.bytesFromRouter)
        // An upstream the gateway has forgotten (an unused router) loses its series.
        self.metrics.setSeries(
            .gatewayUpstreams,
            gateway.upstreams.flatMap { upstream in
                GatewayMetricsSnapshot.states.map { state in
                    (
                        labels: [("upstream", upstream.upstream), ("role", upstream.role), ("state", state)],
                        value: upstream.state == state ? 1 : 0
                    )
                }
            }
        )
        self.metrics.setSeries(
            .gatewayUpstreamCertificateExpiry,
            gateway.certificates.map { certificate in
                (
                    labels: [("upstream", "\(certificate.endpoint)"), ("role", certificate.role)],
                    value: Int(certificate.notValidAfter)
                )
            }
        )
    }
}
