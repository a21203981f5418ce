// libFuzzer target: the gRPC message deframer and the router frame codec (compiled together
// with Sources/JMPProtocol by scripts/fuzz). The first input byte picks how the rest is split
// into DATA frames; every message is decoded, and every decoded frame must survive a re-encode.
import NIOCore

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzFrameCodec(_ data: UnsafePointer<UInt8>?, _ size: Int) -> CInt {
    guard let data, size > 0 else { return 0 }
    let bytes = UnsafeBufferPointer(start: data, count: size)
    let chunk = Int(bytes[0]) + 1
    var deframer = GRPCMessageDeframer(maximumMessageLength: 64 * 1024)
    var input = ByteBuffer(bytes: bytes.dropFirst())
    do {
        while let piece = input.readSlice(length: min(chunk, input.readableBytes)), piece.readableBytes > 0 {
            try deframer.process(piece) { message in
                guard let frame = try? RouterFrameCodec.decode(message) else { return }
                var encoded = ByteBuffer()
                if frame.type == .data {
                    RouterFrameCodec.encodeDataPrefix(payloadLength: frame.payload.readableBytes, into: &encoded)
                    var payload = frame.payload
                    encoded.writeBuffer(&payload)
                } else {
                    RouterFrameCodec.encodeControl(frame.type, into: &encoded)
                }
                encoded.moveReaderIndex(forwardBy: 5)
                let again = try RouterFrameCodec.decode(encoded)
                precondition(again.type == frame.type, "frame type changed in a round trip")
                // Control frames are re-encoded without the payload they may have carried.
                precondition(frame.type != .data || again.payload == frame.payload, "payload changed in a round trip")
            }
        }
        try deframer.finish()
    } catch {
        // Refusing input is fine; crashing is not.
    }
    return 0
}
