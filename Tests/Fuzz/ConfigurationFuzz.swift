// libFuzzer target: the configuration parser on arbitrary bytes (compiled together with
// Sources/JMPBridgeCore/Configuration by scripts/fuzz). Every outcome is a configuration or a
// ConfigurationError naming the file; nothing may crash.
@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzConfiguration(_ data: UnsafePointer<UInt8>?, _ size: Int) -> CInt {
    guard let data else { return 0 }
    let text = String(decoding: UnsafeBufferPointer(start: data, count: size), as: UTF8.self)
    do {
        var configuration = try ConfigurationLoader.parse(yaml: text, file: "fuzz.yaml")
        try configuration.finalize()
    } catch {
        precondition(error.file == "fuzz.yaml" || error.file == "command line", "an error without its file")
    }
    return 0
}
