import JMPSystemd
import NIOCore

/// Keeps the service manager informed while the bridge runs: `WATCHDOG=1` at half the
/// watchdog interval, sent only after every event loop of the bridge has run a task (so a
/// stalled loop stops the keep-alives and systemd restarts the bridge), and `STATUS=` whenever
/// the status line changes.
struct ServiceManagerReporter: Sendable {
    let notifier: ServiceNotifier
    let group: any EventLoopGroup
    let statusInterval: Duration
    /// The status line already sent (with `READY=1`).
    let initialStatus: String
    let status: @Sendable () -> String

    /// Runs until cancelled; returns at once without a service manager.
    func run() async {
        guard self.notifier.isEnabled else { return }
        await withTaskGroup(of: Void.self) { tasks in
            if let interval = self.notifier.watchdogInterval {
                tasks.addTask { await self.keepWatchdogFed(every: interval) }
            }
            tasks.addTask { await self.reportStatus() }
        }
    }

    private func keepWatchdogFed(every interval: Duration) async {
        while !Task.isCancelled {
            for loop in self.group.makeIterator() {
                do {
                    try await loop.submit {}.get()
                } catch {
                    return  // the loop is shutting down: so is the bridge
                }
            }
            self.notifier.watchdog()
            do { try await Task.sleep(for: interval) } catch { return }
        }
    }

    private func reportStatus() async {
        var last = self.initialStatus
        while !Task.isCancelled {
            do { try await Task.sleep(for: self.statusInterval) } catch { return }
            let now = self.status()
            if now != last {
                self.notifier.status(now)
                last = now
            }
        }
    }
}
