import NIOCore

/// The read settings of every HTTP/2 connection the bridge serves or opens (the gateway's
/// upstream connections too): reads of up to 256 KiB, one per readiness event.
///
/// NIOHTTP2's frame decoder copies each read into its own buffer and hands DATA frames up as
/// slices of it, which reach the streams only at the read's end. A second read before that end
/// would find the buffer shared and copy it whole (see GRPCMessageDeframer.ownsMessages); one
/// large read per event keeps that copy to the one of the bytes just read, and a quarter of the
/// system calls of NIO's default (64 KiB reads, up to four per event).
public enum HTTP2ReadBuffering {
    /// Grows from 16 KiB to 256 KiB as reads fill it.
    public static var allocator: AdaptiveRecvByteBufferAllocator {
        AdaptiveRecvByteBufferAllocator(minimum: 1024, initial: 16384, maximum: 262_144)
    }

    /// One read per readiness event.
    public static let messagesPerRead: UInt = 1
}
