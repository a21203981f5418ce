/// The `status` reply as one JSON document (`jmp-bridge status --json`), schema
/// `jmp-bridge.status/1` (jmp-bridge(8), "STATUS JSON").
///
/// It is made from the text reply, line by line, so the two never disagree: each line's first
/// key names its kind and becomes a named field (`listener=ADDR` → `{"address": ADDR, …}`), digit
/// strings become numbers and `tls=on|off` a boolean. Kinds this version does not know are kept
/// under their own name with an `s` (a later bridge's lines still reach a program).
public enum StatusDocument {
    /// The schema name and version in the document's `schema` field.
    public static let schema = "jmp-bridge.status/1"

    /// What each line kind is called in the document, and the name of its first value.
    static let kinds: [String: (collection: String, first: String)] = [
        "listener": ("listeners", "address"),
        "route": ("routes", "name"),
        "upstream": ("upstreams", "endpoint"),
        "listen": ("listen-calls", "exporter"),
        "relay": ("running-relays", "id"),
    ]

    /// The JSON document for `reply`, the text of a `status` reply.
    public static func json(fromReply reply: String) -> String {
        var bridge: [(String, String)] = []
        var gateway: [(String, String)]?
        var collections: [(String, [[(String, String)]])] = [
            ("listeners", []), ("routes", []),
        ]
        var gatewayCollections: [(String, [[(String, String)]])] = [
            ("upstreams", []), ("listen-calls", []), ("running-relays", []),
        ]
        for line in reply.split(separator: "\n") {
            let items = Self.items(of: line)
            guard let (kind, value) = items.first else { continue }
            let rest = Array(items.dropFirst())
            switch kind {
            case "bridge":
                bridge = [("name", value)] + rest
            case "gateway":
                gateway = [("address", value)] + rest
            default:
                let (collection, first) = Self.kinds[kind] ?? ("\(kind)s", "value")
                let object = [(first, value)] + rest
                if ["upstreams", "listen-calls", "running-relays"].contains(collection),
                    let index = gatewayCollections.firstIndex(where: { $0.0 == collection })
                {
                    gatewayCollections[index].1.append(object)
                } else if let index = collections.firstIndex(where: { $0.0 == collection }) {
                    collections[index].1.append(object)
                } else {
                    collections.append((collection, [object]))
                }
            }
        }
        var out = "{\n  \"schema\": \(Self.string(Self.schema)),\n  \"bridge\": \(Self.object(bridge))"
        for (name, objects) in collections {
            out += ",\n  \(Self.string(name)): \(Self.array(objects))"
        }
        if let gateway {
            var fields = Self.object(gateway)
            fields.removeLast()  // the closing brace
            for (name, objects) in gatewayCollections {
                fields += (fields.hasSuffix("{") ? "" : ", ") + "\(Self.string(name)): \(Self.array(objects))"
            }
            out += ",\n  \"gateway\": \(fields)}"
        } else {
            out += ",\n  \"gateway\": null"
        }
        return out + "\n}\n"
    }

    /// The `key=value` items of one line, as ``StatusReport`` writes them (quoted values with
    /// backslash escapes).
    static func items(of line: Substring) -> [(String, String)] {
        var items: [(String, String)] = []
        var index = line.startIndex
        while index < line.endIndex {
            while index < line.endIndex, line[index] == " " { index = line.index(after: index) }
            guard let equals = line[index...].firstIndex(of: "=") else { break }
            let key = String(line[index..<equals])
            index = line.index(after: equals)
            var value = ""
            if index < line.endIndex, line[index] == "\"" {
                index = line.index(after: index)
                while index < line.endIndex, line[index] != "\"" {
                    if line[index] == "\\", line.index(after: index) < line.endIndex {
                        index = line.index(after: index)
                    }
                    value.append(line[index])
                    index = line.index(after: index)
                }
                if index < line.endIndex { index = line.index(after: index) }
            } else {
                let end = line[index...].firstIndex(of: " ") ?? line.endIndex
                value = String(line[index..<end])
                index = end
            }
            items.append((key, value))
        }
        return items
    }

    private static func object(_ items: [(String, String)]) -> String {
        "{" + items.map { "\(Self.string($0.0)): \(Self.value($0.0, $0.1))" }.joined(separator: ", ") + "}"
    }

    private static func array(_ objects: [[(String, String)]]) -> String {
        guard !objects.isEmpty else { return "[]" }
        return "[\n    " + objects.map(Self.object).joined(separator: ",\n    ") + "\n  ]"
    }

    /// A number for a string of digits (at most 18, so that it fits every JSON reader), a
    /// boolean for `tls`, else a string.
    private static func value(_ key: String, _ value: String) -> String {
        if key == "tls", value == "on" || value == "off" { return value == "on" ? "true" : "false" }
        if !value.isEmpty, value.count <= 18, value.allSatisfy({ $0.isASCII && $0.isNumber }),
            value == "0" || !value.hasPrefix("0")
        {
            return value
        }
        return Self.string(value)
    }

    private static func string(_ text: String) -> String {
        var out = "\""
        for scalar in text.unicodeScalars {
            switch scalar {
            case "\"": out += "\\\""
            case "\\": out += "\\\\"
            case "\n": out += "\\n"
            case "\r": out += "\\r"
            case "\t": out += "\\t"
            case _ where scalar.value < 0x20:
                let hex = String(scalar.value, radix: 16)
                out += "\\u" + String(repeating: "0", count: 4 - hex.count) + hex
            default: out.unicodeScalars.append(scalar)
            }
        }
        return out + "\""
    }
}
