// libFuzzer target: the exporter gateway's reading of `ControllerService/Listen` messages
// (compiled together with Sources/JMPProtocol by scripts/fuzz, linked with swift-protobuf and
// the types it generated from jumpstarter.proto, the reference). The input is one protobuf
// message, read as the controller's `ListenResponse` and as an exporter's `ListenRequest`:
//
// - nothing traps, whatever the bytes;
// - a `ListenResponse` swift-protobuf accepts, with an endpoint and a token, is rewritten, and
//   swift-protobuf reads from the rewritten message the gateway's endpoint, the same token and
//   the same unknown fields, byte for byte (a later controller's fields reach the exporter);
// - whatever the rewrite accepts, swift-protobuf reads back as the rewrite says it is;
// - the lease name the gateway reads from a `ListenRequest` swift-protobuf accepts is its.
import JMPProtocolReference
import NIOCore
import SwiftProtobuf

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzListenMessages(_ data: UnsafePointer<UInt8>?, _ size: Int) -> CInt {
    guard let data else { return 0 }
    let bytes = Array(UnsafeBufferPointer(start: data, count: size))
    let message = ByteBuffer(bytes: bytes)
    let endpoint = "127.0.0.1:8443"

    let reference = try? Jumpstarter_V1_ListenResponse(serializedBytes: bytes)
    let rewrite = try? ListenResponseRewrite(message, endpoint: endpoint)
    if let reference, !reference.routerEndpoint.isEmpty, !reference.routerToken.isEmpty {
        guard let rewrite else { preconditionFailure("a ListenResponse swift-protobuf reads was refused") }
        precondition(rewrite.routerEndpoint == reference.routerEndpoint, "router_endpoint read differently")
        precondition(rewrite.routerToken == reference.routerToken, "router_token read differently")
        guard let again = try? Jumpstarter_V1_ListenResponse(serializedBytes: Array(rewrite.message.readableBytesView))
        else { preconditionFailure("swift-protobuf cannot read the rewritten ListenResponse") }
        precondition(again.unknownFields.data == reference.unknownFields.data, "unknown fields changed")
    }
    if let rewrite {
        guard let again = try? Jumpstarter_V1_ListenResponse(serializedBytes: Array(rewrite.message.readableBytesView))
        else {
            // The rewrite copies the fields it does not touch as they are; if swift-protobuf
            // refuses one of those in the original too, the rewritten message is no worse.
            precondition(reference == nil, "swift-protobuf cannot read the rewritten ListenResponse")
            return 0
        }
        precondition(again.routerEndpoint == endpoint, "the rewritten ListenResponse has another endpoint")
        precondition(again.routerToken == rewrite.routerToken, "the rewritten ListenResponse has another token")
    }

    if let request = try? Jumpstarter_V1_ListenRequest(serializedBytes: bytes) {
        let fields = try? ProtobufField.fields(of: message)
        precondition(fields != nil, "a ListenRequest swift-protobuf reads was refused")
        precondition(
            (fields.flatMap { ProtobufField.string(1, in: $0) } ?? "") == request.leaseName,
            "lease_name read differently"
        )
    }
    return 0
}
