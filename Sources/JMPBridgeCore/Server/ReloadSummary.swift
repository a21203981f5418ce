extension BridgeServer {
    /// What a reload changed.
    public struct ReloadSummary: Sendable, Equatable, CustomStringConvertible {
        /// Routes that are new.
        public var added: [String] = []
        /// Routes that are gone.
        public var removed: [String] = []
        /// Routes whose target changed.
        public var changed: [String] = []
        /// Top-level keys whose change is not applied until a restart.
        public var needRestart: [String] = []
        /// What could not be applied: changed routes whose new console or door could not be
        /// opened, TLS files that could not be reloaded.
        public var failures: [String] = []

        public var description: String {
            var parts: [String] = []
            if !self.added.isEmpty { parts.append("added \(self.added.joined(separator: ", "))") }
            if !self.removed.isEmpty { parts.append("removed \(self.removed.joined(separator: ", "))") }
            if !self.changed.isEmpty { parts.append("changed \(self.changed.joined(separator: ", "))") }
            if parts.isEmpty { parts.append("routes unchanged") }
            if !self.failures.isEmpty { parts.append("failed: \(self.failures.joined(separator: "; "))") }
            if !self.needRestart.isEmpty {
                parts.append("not applied until restart: \(self.needRestart.joined(separator: ", "))")
            }
            return parts.joined(separator: "; ")
        }
    }
}
