import NIOCore

/// A ``StreamTarget`` over a connected socket channel.
public final class SocketStreamTarget: StreamTarget {
    private let channel: any Channel
    private let handler: TargetChannelHandler

    /// Wraps a channel whose pipeline ends in `handler`.
    public init(channel: any Channel, handler: TargetChannelHandler) {
        self.channel = channel
        self.handler = handler
    }

    public func write(_ payload: ByteBuffer, promise: EventLoopPromise<Void>?) {
        self.channel.write(payload, promise: promise)
    }

    public func flush() {
        self.channel.flush()
    }

    public func finishInput(after lastWrite: EventLoopFuture<Void>?) {
        self.channel.flush()
        let channel = self.channel
        // NIO escalates an output shutdown to a full close (dropping queued writes) when the
        // input is already shut, so wait for the last write first.
        if let lastWrite {
            lastWrite.assumeIsolated().whenComplete { _ in channel.close(mode: .output, promise: nil) }
        } else {
            channel.close(mode: .output, promise: nil)
        }
    }

    public func close() {
        self.channel.close(promise: nil)
    }

    public func resumeReading() {
        self.handler.resumeReading()
    }
}
