// libFuzzer target: request metadata and route parsing (compiled together with
// Sources/JMPProtocol by scripts/fuzz). Input lines are `name: value` headers; the usual
// pseudo-headers are added unless the input sets them, so the fuzzer reaches the gRPC checks.
import NIOHPACK

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzRequestHead(_ data: UnsafePointer<UInt8>?, _ size: Int) -> CInt {
    guard let data else { return 0 }
    let text = String(decoding: UnsafeBufferPointer(start: data, count: size), as: UTF8.self)
    var headers = HPACKHeaders()
    for line in text.split(separator: "\n", omittingEmptySubsequences: true) {
        guard let colon = line.dropFirst().firstIndex(of: ":") else { continue }
        let name = String(line[..<colon]).lowercased()
        // HPACK decoding only yields ASCII names (HPACKHeaders traps on others).
        guard name.utf8.allSatisfy({ $0 > 0x20 && $0 < 0x7F }) else { continue }
        let value = String(line[line.index(after: colon)...].drop { $0 == " " })
        headers.add(name: name, value: value)
    }
    for (name, value) in [
        (":method", "POST"), (":path", RouterService.streamPath), ("content-type", "application/grpc"),
    ] where !headers.contains(name: name) {
        headers.add(name: name, value: value)
    }
    if case .success(let head) = GRPCRequestHead.parse(headers), let route = head.route {
        precondition(RouterService.isValidRouteName(route), "an invalid route name was accepted")
    }
    _ = GRPCRequestHead.parseTimeout(text)
    _ = RouterService.isValidRouteName(text)
    return 0
}
