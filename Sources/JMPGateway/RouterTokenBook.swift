import NIOConcurrencyHelpers
import NIOCore

/// The router tokens the gateway handed out and has not yet seen used: a `RouterService/Stream`
/// call on the gateway is relayed only with one of them, and each is honoured once, until it
/// expires. At most ``capacity`` are kept (the ones closest to expiry give way first), so an
/// exporter that never connects cannot make the gateway grow.
final class RouterTokenBook: Sendable {
    /// How many unused tokens are kept at most.
    static let capacity = 4096

    private let grants = NIOLockedValueBox<[String: RouterGrant]>([:])

    /// Records `token` as handed out.
    func record(_ token: String, _ grant: RouterGrant) {
        self.grants.withLockedValue { grants in
            let now = NIODeadline.now()
            if grants.count >= Self.capacity {
                grants = grants.filter { $0.value.expires > now }
            }
            if grants.count >= Self.capacity,
                let soonest = grants.min(by: { $0.value.expires < $1.value.expires })?.key
            {
                grants.removeValue(forKey: soonest)
            }
            grants[token] = grant
        }
    }

    /// The grant of `token`, removed from the book; nil if it was never handed out, was used
    /// already or has expired.
    func take(_ token: String) -> RouterGrant? {
        self.grants.withLockedValue { grants in
            guard let grant = grants.removeValue(forKey: token), grant.expires > .now() else { return nil }
            return grant
        }
    }

    /// Unused, unexpired tokens per lease, for `status`.
    func pendingByLease() -> [String: Int] {
        self.grants.withLockedValue { grants in
            let now = NIODeadline.now()
            var counts: [String: Int] = [:]
            for grant in grants.values where grant.expires > now {
                counts[grant.lease ?? "-", default: 0] += 1
            }
            return counts
        }
    }
}
