import NIOCore
import Testing

@testable import JMPProtocol

/// The gRPC wire form of `messages`: each one behind its 5-byte prefix.
private func grpcStream(_ messages: [[UInt8]]) -> [UInt8] {
    messages.flatMap { Wire.grpcPrefix($0.count) + $0 }
}

/// Feeds `chunks` to a fresh deframer and returns the messages it produced and the deframer.
private func deframe(
    _ chunks: [[UInt8]],
    limit: Int = 1 << 20,
    owns: Bool = false
) throws -> (messages: [[UInt8]], deframer: GRPCMessageDeframer) {
    var deframer = GRPCMessageDeframer(maximumMessageLength: limit, ownsMessages: owns)
    var messages: [[UInt8]] = []
    for chunk in chunks {
        try deframer.process(ByteBuffer(bytes: chunk)) { messages.append($0.bytes) }
    }
    return (messages, deframer)
}

/// Splits `bytes` before each index in `cuts` (ascending).
private func split(_ bytes: [UInt8], at cuts: [Int]) -> [[UInt8]] {
    var chunks: [[UInt8]] = []
    var start = 0
    for cut in cuts {
        chunks.append(Array(bytes[start..<cut]))
        start = cut
    }
    chunks.append(Array(bytes[start...]))
    return chunks
}

@Suite("GRPCMessageDeframer")
struct GRPCMessageDeframerTests {
    static let sample: [[UInt8]] = [[1, 2, 3], [], [4], Array(repeating: 7, count: 300), [], [8, 9]]

    @Test("messages split at every possible chunk boundary", arguments: [false, true])
    func everySingleSplit(owns: Bool) throws {
        let stream = grpcStream(Self.sample)
        for cut in 0...stream.count {
            let (messages, deframer) = try deframe(split(stream, at: [cut]), owns: owns)
            #expect(messages == Self.sample, "cut at \(cut)")
            #expect(deframer.bufferedBytes == 0)
            #expect(throws: Never.self) { try deframer.finish() }
        }
    }

    @Test("messages split at every pair of chunk boundaries", arguments: [false, true])
    func everyDoubleSplit(owns: Bool) throws {
        let messages: [[UInt8]] = [[1, 2, 3], [], [4, 5, 6, 7, 8, 9, 10], [11]]
        let stream = grpcStream(messages)
        for first in 0...stream.count {
            for second in first...stream.count {
                let (result, deframer) = try deframe(split(stream, at: [first, second]), owns: owns)
                #expect(result == messages, "cuts at \(first), \(second)")
                #expect(deframer.bufferedBytes == 0)
            }
        }
    }

    @Test("one byte at a time")
    func byteByByte() throws {
        let stream = grpcStream(Self.sample)
        var deframer = GRPCMessageDeframer(maximumMessageLength: 1000)
        var messages: [[UInt8]] = []
        for (index, byte) in stream.enumerated() {
            try deframer.process(ByteBuffer(bytes: [byte])) { messages.append($0.bytes) }
            let delivered = grpcStream(messages).count
            #expect(deframer.bufferedBytes == index + 1 - delivered)
        }
        #expect(messages == Self.sample)
        try deframer.finish()
    }

    @Test("random messages in random chunks", arguments: [false, true])
    func randomChunks(owns: Bool) throws {
        var random = SeededGenerator(seed: 11)
        for _ in 0..<100 {
            let messages = (0..<Int.random(in: 0...30, using: &random)).map { _ in
                random.bytes(
                    Bool.random(using: &random)
                        ? Int.random(in: 0...10, using: &random) : Int.random(in: 0...5000, using: &random)
                )
            }
            let stream = grpcStream(messages)
            var cuts: [Int] = []
            var position = 0
            while true {
                position += Int.random(in: 0...3000, using: &random)
                if position > stream.count { break }
                cuts.append(position)
            }
            let (result, deframer) = try deframe(split(stream, at: cuts), limit: 5000, owns: owns)
            #expect(result == messages)
            try deframer.finish()
        }
    }

    @Test("many messages in one chunk come out in order")
    func manyInOneChunk() throws {
        let messages = (0..<2000).map { index in [UInt8](repeating: UInt8(index % 251), count: index % 17) }
        let (result, deframer) = try deframe([grpcStream(messages)])
        #expect(result == messages)
        #expect(deframer.bufferedBytes == 0)
        try deframer.finish()
    }

    @Test("empty messages and empty chunks")
    func emptyMessages() throws {
        let (result, _) = try deframe([[], grpcStream([[], [], []]), [], []])
        #expect(result == [[], [], []])
        let (none, deframer) = try deframe([[], []])
        #expect(none.isEmpty)
        try deframer.finish()
    }

    @Test("a message of exactly the limit is accepted")
    func exactlyTheLimit() throws {
        let message = [UInt8](repeating: 1, count: 100)
        let (result, _) = try deframe([grpcStream([message])], limit: 100)
        #expect(result == [message])
    }

    @Test("a message over the limit is refused as soon as its prefix is seen")
    func tooLarge() {
        let tooLarge = grpcStream([[UInt8](repeating: 1, count: 101)])
        // The whole message in one chunk.
        #expect(throws: GRPCDeframingError.messageTooLarge(length: 101, limit: 100)) {
            try deframe([tooLarge], limit: 100)
        }
        // Only the prefix has arrived.
        #expect(throws: GRPCDeframingError.messageTooLarge(length: 101, limit: 100)) {
            try deframe([Array(tooLarge.prefix(5))], limit: 100)
        }
        // The prefix split across chunks, after a good message.
        let stream = grpcStream([[1, 2]]) + tooLarge
        for cut in 8..<12 {
            #expect(throws: GRPCDeframingError.messageTooLarge(length: 101, limit: 100), "cut at \(cut)") {
                try deframe(split(stream, at: [cut]), limit: 100)
            }
        }
        // A length that does not fit in any buffer.
        #expect(throws: GRPCDeframingError.messageTooLarge(length: Int(UInt32.max), limit: 4 << 20)) {
            try deframe([[0, 0xFF, 0xFF, 0xFF, 0xFF]], limit: 4 << 20)
        }
    }

    @Test("messages before an oversized one are still delivered", arguments: [false, true])
    func deliveredBeforeTooLarge(owns: Bool) {
        var deframer = GRPCMessageDeframer(maximumMessageLength: 10, ownsMessages: owns)
        var messages: [[UInt8]] = []
        let stream = grpcStream([[1], [2, 3]]) + Wire.grpcPrefix(11)
        #expect(throws: GRPCDeframingError.messageTooLarge(length: 11, limit: 10)) {
            try deframer.process(ByteBuffer(bytes: stream)) { messages.append($0.bytes) }
        }
        #expect(messages == [[1], [2, 3]])
    }

    @Test("the compressed flag without an encoding is refused")
    func compressed() {
        let compressed: [UInt8] = [1, 0, 0, 0, 2, 0xAA, 0xBB]
        #expect(throws: GRPCDeframingError.compressedWithoutEncoding) {
            try deframe([compressed])
        }
        let stream = grpcStream([[1, 2, 3]]) + compressed
        for cut in 0...stream.count {
            #expect(throws: GRPCDeframingError.compressedWithoutEncoding, "cut at \(cut)") {
                try deframe(split(stream, at: [cut]))
            }
            #expect(throws: GRPCDeframingError.compressedWithoutEncoding, "cut at \(cut), owning") {
                try deframe(split(stream, at: [cut]), owns: true)
            }
        }
    }

    @Test("finish() after a partial prefix reports what is missing")
    func truncatedPrefix() throws {
        let (_, deframer) = try deframe([[0, 0, 0]])
        #expect(deframer.bufferedBytes == 3)
        #expect(throws: GRPCDeframingError.truncated(missing: 2)) { try deframer.finish() }
    }

    @Test("finish() inside a message reports what is missing")
    func truncatedBody() throws {
        let stream = grpcStream([[1, 2], [UInt8](repeating: 3, count: 10)])
        // Everything but the last 6 bytes of the second message.
        let (messages, deframer) = try deframe([Array(stream.dropLast(6))])
        #expect(messages == [[1, 2]])
        #expect(deframer.bufferedBytes == 5 + 4)
        #expect(throws: GRPCDeframingError.truncated(missing: 6)) { try deframer.finish() }
        // The same, arriving in pieces.
        let (_, pieces) = try deframe(split(Array(stream.dropLast(6)), at: [3, 9, 10]))
        #expect(throws: GRPCDeframingError.truncated(missing: 6)) { try pieces.finish() }
        // Only a prefix.
        let (_, prefixOnly) = try deframe([Wire.grpcPrefix(10)])
        #expect(throws: GRPCDeframingError.truncated(missing: 10)) { try prefixOnly.finish() }
    }

    @Test("a deframer keeps working after a message that spanned chunks")
    func continuesAfterGathering() throws {
        var deframer = GRPCMessageDeframer(maximumMessageLength: 1000)
        var messages: [[UInt8]] = []
        let stream = grpcStream([[1, 2, 3, 4], [5], [6, 7]])
        try deframer.process(ByteBuffer(bytes: Array(stream.prefix(7)))) { messages.append($0.bytes) }
        #expect(messages.isEmpty)
        #expect(deframer.bufferedBytes == 7)
        try deframer.process(ByteBuffer(bytes: Array(stream.dropFirst(7)))) { messages.append($0.bytes) }
        #expect(messages == [[1, 2, 3, 4], [5], [6, 7]])
        #expect(deframer.bufferedBytes == 0)
        try deframer.process(ByteBuffer(bytes: grpcStream([[8]]))) { messages.append($0.bytes) }
        #expect(messages.last == [8])
    }

    @Test("an error thrown by the body propagates")
    func bodyErrorPropagates() {
        struct Stop: Error {}
        var deframer = GRPCMessageDeframer(maximumMessageLength: 100)
        #expect(throws: Stop.self) {
            try deframer.process(ByteBuffer(bytes: grpcStream([[1]]))) { _ in throw Stop() }
        }
    }

    @Test("messages are delivered from a buffer whose reader index is not 0")
    func bufferWithOffset() throws {
        var buffer = ByteBuffer(bytes: [0xEE, 0xEE, 0xEE] + grpcStream([[1, 2], [3]]))
        buffer.moveReaderIndex(forwardBy: 3)
        var deframer = GRPCMessageDeframer(maximumMessageLength: 100)
        var messages: [[UInt8]] = []
        try deframer.process(buffer) { messages.append($0.bytes) }
        #expect(messages == [[1, 2], [3]])
    }

    @Test("with ownsMessages no message shares memory with the buffers passed in")
    func ownedMessagesAreCopies() throws {
        let messages: [[UInt8]] = [[1, 2, 3], Array(repeating: 9, count: 200), [4], [], [5, 6]]
        let stream = grpcStream(messages)
        for cut in stride(from: 0, through: stream.count, by: 7) {
            var deframer = GRPCMessageDeframer(maximumMessageLength: 1000, ownsMessages: true)
            var received: [[UInt8]] = []
            for chunk in split(stream, at: [cut]) {
                let input = ByteBuffer(bytes: chunk)
                try deframer.process(input) { message in
                    received.append(message.bytes)
                    #expect(!Self.overlaps(message, input), "cut at \(cut)")
                }
            }
            #expect(received == messages)
        }
        // Without it, whole messages are slices of the frame's buffer.
        var slicing = GRPCMessageDeframer(maximumMessageLength: 1000)
        let input = ByteBuffer(bytes: stream)
        var shared = 0
        try slicing.process(input) { message in
            if message.readableBytes > 0 && Self.overlaps(message, input) { shared += 1 }
        }
        #expect(shared == 4)
    }

    /// Whether the readable bytes of `message` lie inside those of `input`.
    private static func overlaps(_ message: ByteBuffer, _ input: ByteBuffer) -> Bool {
        input.withUnsafeReadableBytes { outer in
            message.withUnsafeReadableBytes { inner in
                guard let innerStart = inner.baseAddress, let outerStart = outer.baseAddress else { return false }
                return innerStart >= outerStart && innerStart < outerStart + outer.count
            }
        }
    }
}
