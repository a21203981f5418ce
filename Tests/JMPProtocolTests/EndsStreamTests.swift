import JMPProtocol
import NIOCore
import NIOHPACK
import NIOHTTP2
import Testing

@Suite("Frames that end a side of a stream")
struct EndsStreamTests {
    @Test("HEADERS and DATA with END_STREAM and RST_STREAM end it; the rest do not")
    func endsStream() {
        let data = ByteBuffer(string: "x")
        #expect(HTTP2Frame.FramePayload.headers(.init(headers: HPACKHeaders(), endStream: true)).endsStream)
        #expect(!HTTP2Frame.FramePayload.headers(.init(headers: HPACKHeaders())).endsStream)
        #expect(HTTP2Frame.FramePayload.data(.init(data: .byteBuffer(data), endStream: true)).endsStream)
        #expect(!HTTP2Frame.FramePayload.data(.init(data: .byteBuffer(data))).endsStream)
        #expect(HTTP2Frame.FramePayload.rstStream(.noError).endsStream)
        #expect(!HTTP2Frame.FramePayload.windowUpdate(windowSizeIncrement: 1).endsStream)
    }
}
