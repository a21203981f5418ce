import NIOHTTP2

extension HTTP2Frame.FramePayload {
    /// Whether the frame ends its sender's side of the stream: HEADERS or DATA with END_STREAM,
    /// or RST_STREAM.
    public var endsStream: Bool {
        switch self {
        case .headers(let headers): headers.endStream
        case .data(let data): data.endStream
        case .rstStream: true
        default: false
        }
    }
}
