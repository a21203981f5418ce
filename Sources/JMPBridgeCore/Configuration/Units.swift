import Foundation
import NIOCore

/// Parsing of the human units used in configuration: sizes and durations.
enum Units {
    /// `65536`, `64KiB`, `64K`, `4MiB`, `1GiB` (binary multiples; `KB`/`MB` mean the same here).
    static func parseSize(_ text: String) -> Int? {
        let trimmed = text.trimmingCharacters(in: .whitespaces)
        let digits = trimmed.prefix { $0.isASCII && $0.isNumber }
        guard !digits.isEmpty, let value = Int(digits) else { return nil }
        let unit = trimmed.dropFirst(digits.count).trimmingCharacters(in: .whitespaces).lowercased()
        let multiplier: Int
        switch unit {
        case "", "b": multiplier = 1
        case "k", "kb", "kib": multiplier = 1 << 10
        case "m", "mb", "mib": multiplier = 1 << 20
        case "g", "gb", "gib": multiplier = 1 << 30
        default: return nil
        }
        let (result, overflow) = value.multipliedReportingOverflow(by: multiplier)
        return overflow ? nil : result
    }

    /// `500ms`, `5s`, `2m`, `1h`; a bare number means seconds.
    static func parseDuration(_ text: String) -> TimeAmount? {
        let trimmed = text.trimmingCharacters(in: .whitespaces)
        let digits = trimmed.prefix { $0.isASCII && $0.isNumber }
        guard !digits.isEmpty, let value = Int64(digits), value < 1_000_000_000 else { return nil }
        switch trimmed.dropFirst(digits.count).trimmingCharacters(in: .whitespaces) {
        case "ms": return .milliseconds(value)
        case "", "s": return .seconds(value)
        case "m", "min": return .minutes(value)
        case "h": return .hours(value)
        default: return nil
        }
    }
}
