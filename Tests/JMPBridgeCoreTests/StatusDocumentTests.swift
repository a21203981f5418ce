import Testing

@testable import JMPBridgeCore

/// `status --json` is made from the text reply: the same facts, typed, under named fields.
@Suite struct StatusDocumentTests {
    @Test func linesBecomeNamedFieldsWithNumbersAndBooleans() {
        let reply =
            StatusReport.line([("bridge", "jmp-bridge"), ("state", "ready"), ("streams-total", "12")])
            + StatusReport.line([("listener", "tcp:127.0.0.1:8083"), ("configured", "tcp:127.0.0.1:0"), ("tls", "on")])
            + StatusReport.line([("route", "uart0"), ("settings", "115200 8N1 \"x\" \\ y"), ("cuts", "007")])
            + StatusReport.line([("gateway", "tcp:127.0.0.1:9"), ("listens", "1"), ("relays", "0")])
            + StatusReport.line([("upstream", "c:443"), ("streams", "2")])
            + StatusReport.line([("relay", "17"), ("lease", "l-1")])
            + StatusReport.line([("future", "thing"), ("n", "3")])
        let json = StatusDocument.json(fromReply: reply)
        #expect(json.contains(#""schema": "jmp-bridge.status/1""#))
        #expect(json.contains(#""bridge": {"name": "jmp-bridge", "state": "ready", "streams-total": 12}"#))
        #expect(json.contains(#"{"address": "tcp:127.0.0.1:8083", "configured": "tcp:127.0.0.1:0", "tls": true}"#))
        // Quotes and backslashes survive; a leading zero keeps a string a string.
        #expect(json.contains(#"{"name": "uart0", "settings": "115200 8N1 \"x\" \\ y", "cuts": "007"}"#))
        #expect(json.contains(#""gateway": {"address": "tcp:127.0.0.1:9", "listens": 1, "relays": 0, "upstreams": ["#))
        #expect(json.contains(#"{"endpoint": "c:443", "streams": 2}"#))
        #expect(json.contains(#""running-relays": [\#n    {"id": 17, "lease": "l-1"}"#))
        #expect(json.contains(#""futures": [\#n    {"value": "thing", "n": 3}"#))
    }

    @Test func noGatewayIsNull() {
        let json = StatusDocument.json(fromReply: StatusReport.line([("bridge", "jmp-bridge")]))
        #expect(json.contains(#""gateway": null"#))
        #expect(json.contains(#""listeners": []"#))
    }
}
