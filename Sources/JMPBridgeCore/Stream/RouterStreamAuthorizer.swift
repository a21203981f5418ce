import JMPMetrics
import JMPProtocol
import Logging

/// Decides whether a stream may be bridged: checks the bearer token (when the listener demands
/// one), resolves the route, honours a token's route binding and takes the stream's places in
/// the stream limits. Refusals are gRPC statuses (docs/WIRE.md, status table).
struct RouterStreamAuthorizer {
    /// What an admitted stream gets.
    struct Grant {
        /// The route the stream is bridged to.
        var route: RouteConfiguration
        /// The stream's places in the limits, to release when it ends.
        var admission: StreamAdmission
    }

    let environment: BridgeContext
    let security: ListenerSecurity
    let connection: ConnectionStreams

    /// Admits the stream `head` asks for, or says why not. Adds `route` (and the token's
    /// `subject`) to `logger`'s metadata as they become known.
    func authorize(_ head: GRPCRequestHead, logger: inout Logger) -> Result<Grant, GRPCStatus> {
        logger[metadataKey: "route"] = "\(head.route ?? "(default)")"

        // Authentication first: a client without a valid token learns nothing about the routes.
        let table = self.environment.routes.withLockedValue { $0 }
        if let verifier = self.security.verifier {
            let claims: RouterTokenClaims
            switch verifier.verify(authorization: head.authorization, repeated: head.authorizationRepeated) {
            case .failure(let refusal):
                self.security.metrics?.authenticationFailed(refusal.reason)
                return .failure(refusal.status)
            case .success(let verified):
                claims = verified
            }
            if let subject = claims.sub?.value { logger[metadataKey: "subject"] = "\(subject)" }
            if let bound = claims.route, bound != head.route ?? table.defaultRoute {
                self.security.metrics?.authenticationFailed(.routeBinding)
                return .failure(GRPCStatus(.permissionDenied, "the token is bound to route '\(bound)'"))
            }
        }

        let route: RouteConfiguration
        switch table.resolve(head.route) {
        case .failure(let status):
            return .failure(status)
        case .success(let resolved):
            route = resolved
        }
        logger[metadataKey: "route"] = "\(route.name)"
        return StreamAdmission.admit(route: route, environment: self.environment, connection: self.connection)
            .map { Grant(route: route, admission: $0) }
    }
}
