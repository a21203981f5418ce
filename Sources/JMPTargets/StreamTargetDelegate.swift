import NIOCore

/// What a target's channel reports to the stream it is bridged to. Every call happens on the
/// event loop both channels share.
public protocol StreamTargetDelegate: AnyObject {
    /// Bytes read from the target.
    func targetRead(_ bytes: ByteBuffer)
    /// The end of a batch of reads: a good moment to flush.
    func targetReadComplete()
    /// The target half-closed: it will send no more bytes but may still receive.
    func targetReachedEOF()
    /// The target's channel closed, with the error that closed it if there was one.
    func targetClosed(error: (any Error)?)
    /// The target's outbound buffer drained below its low watermark or rose above its high one.
    func targetWritabilityChanged(isWritable: Bool)
    /// Whether the target may read now; when false the read is held until ``TargetChannelHandler/resumeReading()``.
    var targetMayRead: Bool { get }
    /// Whether the stream still waits for its target to connect (false once it has ended): a
    /// connect to a busy target stops retrying when it turns false.
    var awaitsTarget: Bool { get }
}

extension StreamTargetDelegate {
    /// Every delegate waits for its target unless it says otherwise.
    public var awaitsTarget: Bool { true }
}
