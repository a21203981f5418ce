import JMPTargets
import Logging
import NIOCore

/// Serves one connection on the control socket: reads the request line (see ``ControlRequest``),
/// then answers a status request, or attaches the connection to a console through a
/// ``ConsoleSession``, as a gRPC stream is: the scrollback first, then the live output, with the
/// same lag limit (output the socket has not taken counts as lag); its input goes to the device
/// unless the attachment is read-only. The client's end-of-file detaches it.
final class ControlConnectionHandler: ChannelDuplexHandler, ConsoleSessionClient {
    typealias InboundIn = ByteBuffer
    typealias OutboundIn = ByteBuffer
    typealias OutboundOut = ByteBuffer

    private enum Phase {
        case request
        case attaching(ConsoleSession)
        case attached(ConsoleSession)
        case done
    }

    private let environment: BridgeContext
    private var logger: Logger
    private var phase = Phase.request
    private var requestBytes: ByteBuffer
    private var context: ChannelHandlerContext?
    private var readOnly = false
    /// The console route whose `max-attachments` place this attach holds, until it closes.
    private var place: String?
    /// Input read while attaching, written once attached.
    private var earlyInput: [ByteBuffer] = []
    private var readPending = false
    private var clientDone = false

    init(environment: BridgeContext) {
        self.environment = environment
        self.logger = environment.logger
        self.requestBytes = ByteBuffer()
    }

    func handlerAdded(context: ChannelHandlerContext) {
        self.context = context
    }

    func handlerRemoved(context: ChannelHandlerContext) {
        self.context = nil
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        var bytes = Self.unwrapInboundIn(data)
        switch self.phase {
        case .request:
            self.requestBytes.writeBuffer(&bytes)
            guard let newline = self.requestBytes.readableBytesView.firstIndex(of: UInt8(ascii: "\n")) else {
                if self.requestBytes.readableBytes >= ControlRequest.maximumLength {
                    self.reply(
                        error: "request line longer than \(ControlRequest.maximumLength) bytes",
                        context: context
                    )
                }
                return
            }
            let length = newline - self.requestBytes.readerIndex
            let line = self.requestBytes.readString(length: length) ?? ""
            self.requestBytes.moveReaderIndex(forwardBy: 1)
            let rest = self.requestBytes.readSlice(length: self.requestBytes.readableBytes)
            self.handle(line, context: context)
            if let rest, rest.readableBytes > 0 { self.input(rest) }
        case .attaching, .attached:
            self.input(bytes)
        case .done:
            break
        }
    }

    func userInboundEventTriggered(context: ChannelHandlerContext, event: Any) {
        guard let event = event as? ChannelEvent, event == .inputClosed else {
            context.fireUserInboundEventTriggered(event)
            return
        }
        self.clientDone = true
        switch self.phase {
        case .request:
            self.phase = .done
            context.close(promise: nil)
        case .attached:
            self.detachAndClose(context: context)
        case .attaching, .done:
            break
        }
    }

    func channelInactive(context: ChannelHandlerContext) {
        self.detach()
        if let place = self.place {
            self.place = nil
            self.environment.releaseAttachmentPlace(place)
        }
        self.phase = .done
        context.fireChannelInactive()
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        self.logger.debug("control connection error", metadata: ["error": "\(error)"])
        context.close(promise: nil)
    }

    func read(context: ChannelHandlerContext) {
        if case .attached(let session) = self.phase, !session.isInputWritable {
            self.readPending = true
        } else {
            context.read()
        }
    }

    // MARK: - Requests

    private func handle(_ line: String, context: ChannelHandlerContext) {
        switch ControlRequest.parse(line) {
        case .failure(let problem):
            self.reply(error: problem.message, context: context)
        case .success(.status):
            self.phase = .done
            StatusReport.make(environment: self.environment, on: context.eventLoop).assumeIsolated()
                .whenComplete { result in
                    let text: String
                    switch result {
                    case .success(let report): text = "ok\n" + report
                    case .failure(let error): text = "error \(error)\n"
                    }
                    context.writeAndFlush(Self.wrapOutboundOut(ByteBuffer(string: text))).assumeIsolated()
                        .whenComplete { _ in context.close(promise: nil) }
                }
        case .success(.attach(let route, let readOnly)):
            self.attach(route: route, readOnly: readOnly, context: context)
        }
    }

    private func reply(error message: String, context: ChannelHandlerContext) {
        self.phase = .done
        let line = "error " + message.split(whereSeparator: \.isNewline).joined(separator: " ") + "\n"
        context.writeAndFlush(Self.wrapOutboundOut(ByteBuffer(string: line))).assumeIsolated()
            .whenComplete { _ in context.close(promise: nil) }
    }

    private func attach(route name: String, readOnly: Bool, context: ChannelHandlerContext) {
        let route: RouteConfiguration
        switch self.environment.routes.withLockedValue({ $0.resolve(name) }) {
        case .failure(let status):
            self.reply(error: status.message, context: context)
            return
        case .success(let resolved):
            route = resolved
        }
        guard route.target.isConsole else {
            self.reply(error: "route '\(name)' is not a console (it is \(route.target))", context: context)
            return
        }
        guard let hub = self.environment.consoles.withLockedValue({ $0[route.name] }) else {
            self.reply(error: "route '\(name)': the console is not open", context: context)
            return
        }
        guard self.environment.takeAttachmentPlace(route) else {
            self.logger.notice("local attach refused: max-attachments", metadata: ["route": "\(route.name)"])
            self.reply(
                error: "route '\(name)': \(route.target.maxAttachments ?? 0) attachments already (max-attachments)",
                context: context
            )
            return
        }
        self.place = route.name
        self.readOnly = readOnly
        self.logger[metadataKey: "route"] = "\(route.name)"
        let session = ConsoleSession(hub: hub, on: context.eventLoop)
        self.phase = .attaching(session)
        session.attach(self).assumeIsolated().whenComplete { result in
            switch result {
            case .failure(let error):
                let reason = (error as? ConsoleUnavailable)?.reason ?? "\(error)"
                self.reply(error: reason, context: context)
            case .success:
                guard case .attaching = self.phase else {
                    session.detach()  // the client went away meanwhile
                    return
                }
                self.phase = .attached(session)
                self.logger.info("local console attached", metadata: ["read-only": "\(readOnly)"])
                context.writeAndFlush(Self.wrapOutboundOut(ByteBuffer(string: "ok\n")), promise: nil)
                session.start()
                let input = self.earlyInput
                self.earlyInput = []
                for bytes in input { self.input(bytes) }
                if self.clientDone { self.detachAndClose(context: context) }
            }
        }
    }

    // MARK: - Attached

    /// Writes output to the client; once the socket has taken it, the session hears it was taken.
    func consoleSessionOutput(_ bytes: ByteBuffer) {
        guard let context = self.context, case .attached(let session) = self.phase else { return }
        let count = bytes.readableBytes
        let promise = context.eventLoop.makePromise(of: Void.self)
        context.writeAndFlush(Self.wrapOutboundOut(bytes), promise: promise)
        promise.futureResult.assumeIsolated().whenSuccess { session.acknowledge(count) }
    }

    func consoleSessionInputWritabilityChanged(isWritable: Bool) {
        guard isWritable, self.readPending, let context = self.context else { return }
        self.readPending = false
        context.read()
    }

    private func input(_ bytes: ByteBuffer) {
        switch self.phase {
        case .attaching:
            self.earlyInput.append(bytes)
        case .attached(let session):
            // A read-only attachment's keys go nowhere.
            guard !self.readOnly, bytes.readableBytes > 0, let context = self.context else { return }
            session.write(bytes).assumeIsolated().whenFailure { _ in context.close(promise: nil) }
        default:
            break
        }
    }

    func consoleSessionCut(_ reason: ConsoleUnavailable) {
        guard case .attached = self.phase, let context = self.context else { return }
        self.phase = .done
        self.logger.warning("local console attachment ended", metadata: ["reason": "\(reason.reason)"])
        context.close(promise: nil)
    }

    private func detach() {
        switch self.phase {
        case .attaching(let session), .attached(let session): session.detach()
        case .request, .done: break
        }
    }

    private func detachAndClose(context: ChannelHandlerContext) {
        self.detach()
        self.phase = .done
        self.logger.info("local console detached")
        // Output already written goes out first.
        context.writeAndFlush(Self.wrapOutboundOut(ByteBuffer())).assumeIsolated().whenComplete { _ in
            context.close(promise: nil)
        }
    }
}
