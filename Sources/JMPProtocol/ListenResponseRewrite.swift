import NIOCore

/// A `jumpstarter.v1.ListenResponse` (docs/WIRE.md, "The gateway") with its `router_endpoint`
/// replaced: what the exporter gateway forwards to an exporter instead of the controller's.
///
/// Only field 1 (`router_endpoint`) changes; `router_token` (field 2) and any field a later
/// controller adds are copied byte for byte, so the token reaches the exporter unchanged. So is
/// a field 1 of another wire type than a string's, which protobuf parsers keep as an unknown
/// field (swift-protobuf and upb do); the rewritten message has one string field 1, first.
public struct ListenResponseRewrite: Sendable {
    /// The rewritten message.
    public var message: ByteBuffer
    /// The router endpoint the controller sent.
    public var routerEndpoint: String
    /// The router token the controller sent (and the rewritten message carries).
    public var routerToken: String

    /// Rewrites `message` so that its `router_endpoint` is `endpoint`.
    public init(_ message: ByteBuffer, endpoint: String) throws(ProtobufWireError) {
        let fields = try ProtobufField.fields(of: message)
        guard let routerEndpoint = ProtobufField.string(1, in: fields) else {
            throw ProtobufWireError("ListenResponse without a router_endpoint")
        }
        guard let routerToken = ProtobufField.string(2, in: fields), !routerToken.isEmpty else {
            throw ProtobufWireError("ListenResponse without a router_token")
        }
        var out = ByteBuffer()
        out.reserveCapacity(message.readableBytes + endpoint.utf8.count)
        ProtobufField.writeString(1, endpoint, to: &out)
        for var field in fields where !(field.number == 1 && field.wireType == 2) {
            out.writeBuffer(&field.bytes)
        }
        self.message = out
        self.routerEndpoint = routerEndpoint
        self.routerToken = routerToken
    }
}
