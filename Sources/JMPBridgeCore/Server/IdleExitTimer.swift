import NIOConcurrencyHelpers
import NIOCore

/// Counts client connections and, once there has been none for the configured time, calls
/// back: a socket-activated bridge then exits, and systemd starts it again on the next
/// connection (what `systemd-socket-proxyd --exit-idle-time` does).
final class IdleExitTimer: Sendable {
    private struct State {
        var connections = 0
        var timer: Scheduled<Void>?
        var onIdle: (@Sendable () -> Void)?
    }

    private let idleTime: TimeAmount
    private let eventLoop: any EventLoop
    private let state = NIOLockedValueBox(State())

    init(idleTime: TimeAmount, eventLoop: any EventLoop) {
        self.idleTime = idleTime
        self.eventLoop = eventLoop
    }

    /// Starts watching; `onIdle` is called once, after `idleTime` without a connection.
    func start(onIdle: @escaping @Sendable () -> Void) {
        self.state.withLockedValue { state in
            state.onIdle = onIdle
            if state.connections == 0 { self.arm(&state) }
        }
    }

    /// Stops watching (shutdown began for another reason).
    func stop() {
        self.state.withLockedValue { state in
            state.onIdle = nil
            state.timer?.cancel()
            state.timer = nil
        }
    }

    func connectionOpened() {
        self.state.withLockedValue { state in
            state.connections += 1
            state.timer?.cancel()
            state.timer = nil
        }
    }

    func connectionClosed() {
        self.state.withLockedValue { state in
            state.connections -= 1
            if state.connections == 0, state.onIdle != nil { self.arm(&state) }
        }
    }

    private func arm(_ state: inout State) {
        state.timer?.cancel()
        state.timer = self.eventLoop.scheduleTask(in: self.idleTime) { [self] in
            let callback = self.state.withLockedValue { state -> (@Sendable () -> Void)? in
                guard state.connections == 0 else { return nil }
                defer { state.onIdle = nil }
                state.timer = nil
                return state.onIdle
            }
            callback?()
        }
    }
}
