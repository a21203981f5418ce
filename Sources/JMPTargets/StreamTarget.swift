import NIOCore

/// The local end of one bridged stream, as the stream handler drives it: a connected Unix
/// socket, or an attachment to a console. Used only on the stream's event loop; events come
/// back through the ``StreamTargetDelegate`` it was opened with.
public protocol StreamTarget: AnyObject {
    /// Queues payload bytes for the target; `promise` completes once they are written (or fails
    /// if they never will be).
    func write(_ payload: ByteBuffer, promise: EventLoopPromise<Void>?)
    /// Pushes queued writes out.
    func flush()
    /// The client will send no more. A socket is half-closed once `lastWrite` completes; a
    /// console attachment ends (the console itself goes on).
    func finishInput(after lastWrite: EventLoopFuture<Void>?)
    /// Tears the target side down at once.
    func close()
    /// Issues a read held back while the client could not take more.
    func resumeReading()
}
