import NIOCore

/// The `exp` claim of a JWT, read without verifying it (the router verifies; the gateway only
/// needs to know how long to remember the token).
enum TokenExpiry {
    /// Tokens without a readable `exp` are remembered this long; none longer.
    static let longest = TimeAmount.hours(24)

    /// When `token` expires, as a deadline on this machine's monotonic clock, capped at a day.
    ///
    /// The router judges `exp` by its own clock, which the lab host's may be behind or ahead of.
    /// So the gateway takes the longer of the two lifetimes it can read: `exp` by this host's
    /// clock, and `exp - iat` (the lifetime the controller gave the token, just issued when the
    /// `ListenResponse` passes) from now. A host clock half an hour fast would otherwise find
    /// every token expired on arrival and refuse streams the router would take.
    static func deadline(of token: String, now: NIODeadline = .now(), wallClock: Int64) -> NIODeadline {
        let cap = now + Self.longest
        guard let payload = Self.payload(of: token), let exp = Self.claim("exp", in: payload) else { return cap }
        var remaining = exp - wallClock
        if let issued = Self.claim("iat", in: payload), exp > issued { remaining = max(remaining, exp - issued) }
        guard remaining > 0 else { return now }
        return min(cap, now + .seconds(min(remaining, 86_400)))
    }

    /// The numeric `exp` of the token's payload, if it is a JWT with one.
    static func expClaim(_ token: String) -> Int64? {
        Self.payload(of: token).flatMap { Self.claim("exp", in: $0) }
    }

    /// The decoded payload (the JSON claims) of a JWT; nil if `token` is not one.
    private static func payload(of token: String) -> [UInt8]? {
        let parts = token.split(separator: ".", omittingEmptySubsequences: false)
        guard parts.count == 3 else { return nil }
        return Self.base64URLDecode(parts[1])
    }

    /// The numeric claim `name` (`exp`, `iat`) of a decoded payload, if it has one.
    private static func claim(_ name: String, in payload: [UInt8]) -> Int64? {
        // The payload is a JSON object; find the key (a string followed by a colon, not the same
        // text as a value, such as `"sub":"exp"`), then a number.
        let key = Array("\"\(name)\"".utf8)
        guard payload.count >= key.count else { return nil }
        for start in 0...(payload.count - key.count)
        where payload[start..<(start + key.count)].elementsEqual(key) {
            var rest = payload[(start + key.count)...].drop(while: Self.isWhitespace)
            guard rest.first == UInt8(ascii: ":") else { continue }
            rest = rest.dropFirst().drop(while: Self.isWhitespace)
            let digits = rest.prefix(while: { (UInt8(ascii: "0")...UInt8(ascii: "9")).contains($0) })
            guard !digits.isEmpty, digits.count < 19 else { return nil }
            return digits.reduce(Int64(0)) { $0 * 10 + Int64($1 - UInt8(ascii: "0")) }
        }
        return nil
    }

    /// JSON's whitespace between tokens (RFC 8259, section 2).
    private static func isWhitespace(_ byte: UInt8) -> Bool {
        byte == UInt8(ascii: " ") || byte == UInt8(ascii: "\t") || byte == UInt8(ascii: "\n")
            || byte == UInt8(ascii: "\r")
    }

    private static func base64URLDecode(_ text: Substring) -> [UInt8]? {
        var bytes: [UInt8] = []
        var accumulator: UInt32 = 0
        var bits = 0
        for character in text.utf8 {
            let value: UInt8
            switch character {
            case UInt8(ascii: "A")...UInt8(ascii: "Z"): value = character - UInt8(ascii: "A")
            case UInt8(ascii: "a")...UInt8(ascii: "z"): value = character - UInt8(ascii: "a") + 26
            case UInt8(ascii: "0")...UInt8(ascii: "9"): value = character - UInt8(ascii: "0") + 52
            case UInt8(ascii: "-"), UInt8(ascii: "+"): value = 62
            case UInt8(ascii: "_"), UInt8(ascii: "/"): value = 63
            case UInt8(ascii: "="): continue
            default: return nil
            }
            accumulator = accumulator << 6 | UInt32(value)
            bits += 6
            if bits >= 8 {
                bits -= 8
                bytes.append(UInt8(truncatingIfNeeded: accumulator >> UInt32(bits)))
            }
        }
        return bytes
    }
}
