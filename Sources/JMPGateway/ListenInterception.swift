import JMPProtocol
import NIOCore

/// What the gateway does to a `ControllerService/Listen` call: reads the lease name from the
/// exporter's `ListenRequest`, and in every `ListenResponse` replaces `router_endpoint` with the
/// gateway's advertised address, remembering the token and the real router for the relay.
struct ListenInterception {
    let record: ListenRecord
    private var requests = GRPCMessageDeframer(maximumMessageLength: 64 * 1024)
    private var responses = GRPCMessageDeframer(maximumMessageLength: 4 * 1024 * 1024)

    init(record: ListenRecord) {
        self.record = record
    }

    /// Reads the lease name from the first request message (the bytes go upstream unchanged).
    mutating func request(_ bytes: ByteBuffer) {
        guard self.record.lease == nil else { return }
        let record = self.record
        try? self.requests.process(bytes) { message in
            if let fields = try? ProtobufField.fields(of: message), record.lease == nil {
                record.lease = ProtobufField.string(1, in: fields) ?? ""
            }
        }
    }

    /// The response bytes to forward for `bytes` from the controller: every whole
    /// `ListenResponse` rewritten and framed again; a partial one is kept for the next DATA.
    mutating func response(_ bytes: ByteBuffer, endStream: Bool, gateway: Gateway) throws -> ByteBuffer {
        var out = ByteBuffer()
        let record = self.record
        try self.responses.process(bytes) { message in
            let rewrite = try ListenResponseRewrite(message, endpoint: gateway.advertise)
            guard let router = UpstreamEndpoint(parsing: rewrite.routerEndpoint) else {
                throw ProtobufWireError(
                    "the controller named a router the gateway cannot dial: '\(rewrite.routerEndpoint)'"
                )
            }
            gateway.handedOut(token: rewrite.routerToken, router: router, listen: record)
            var message = rewrite.message
            out.writeInteger(UInt8(0))
            out.writeInteger(UInt32(message.readableBytes))
            out.writeBuffer(&message)
        }
        if endStream { try self.responses.finish() }
        return out
    }
}
