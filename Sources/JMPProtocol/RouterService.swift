/// Names of the `jumpstarter.v1.RouterService` gRPC service and the metadata the bridge reads.
public enum RouterService {
    /// The HTTP/2 `:path` of the only method served.
    public static let streamPath = "/jumpstarter.v1.RouterService/Stream"
    /// Metadata key that selects a route; absent means the default route.
    public static let routeMetadataKey = "jmp-route"
    /// Metadata key that asks for a read-only console attachment (`ro`) or the default (`rw`).
    public static let attachMetadataKey = "jmp-attach"
    /// Metadata key that carries `Bearer <token>`.
    public static let authorizationMetadataKey = "authorization"

    /// Whether `name` is a valid route name: `[A-Za-z0-9._-]{1,64}`. Route names only ever name
    /// configured routes, so this also keeps anything path-like out.
    public static func isValidRouteName(_ name: some StringProtocol) -> Bool {
        let utf8 = name.utf8
        guard (1...64).contains(utf8.count) else { return false }
        return utf8.allSatisfy { byte in
            switch byte {
            case UInt8(ascii: "A")...UInt8(ascii: "Z"), UInt8(ascii: "a")...UInt8(ascii: "z"),
                UInt8(ascii: "0")...UInt8(ascii: "9"), UInt8(ascii: "."), UInt8(ascii: "_"), UInt8(ascii: "-"):
                return true
            default:
                return false
            }
        }
    }
}
