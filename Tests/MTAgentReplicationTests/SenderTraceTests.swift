import MTAgentCore
import Testing

@testable import MTAgentReplication

/// The replay trace format of docs/sender.md.
struct SenderTraceTests {
    @Test func writeDataIsSplitMix64LittleEndian() {
        // SplitMix64 seeded with 0 starts 0xE220A8397B1DCDAF, 0x6E789E6AA1B965F4 (the reference sequence).
        #expect(Trace.data(seed: 0, count: 16) == [0xAF, 0xCD, 0x1D, 0x7B, 0x39, 0xA8, 0x20, 0xE2,
                                                   0xF4, 0x65, 0xB9, 0xA1, 0x6A, 0x9E, 0x78, 0x6E])
        #expect(Trace.data(seed: 0, count: 3) == [0xAF, 0xCD, 0x1D])
        #expect(Trace.data(seed: 0, count: 13) == Array(Trace.data(seed: 0, count: 16).prefix(13)))
        #expect(Trace.data(seed: 1, count: 8) != Trace.data(seed: 0, count: 8))
    }

    @Test func parsesEveryOperationWithCommentsAndHex() throws {
        let trace = try Trace.parse("""
            # a comment
            write 0x1000 512 7   # trailing comment

            tag crash c1
            tag app nightly
            sleep 20
            """, file: "t.trace")
        #expect(trace.ops == [.write(offset: 4096, length: 512, seed: 7), .tag(kind: .crash, name: "c1"),
                              .tag(kind: .app, name: "nightly"), .sleep(millis: 20)])
        #expect(trace.lines == ["t.trace:2", "t.trace:4", "t.trace:5", "t.trace:6"])
    }

    @Test func badLinesNameFileAndLine() {
        for (text, message) in [("write 1 2", "t.trace:1: expected"), ("write x 2 3", "t.trace:1: 'x' is not a number"),
                                ("\ntag soft a", "t.trace:2: tag kind must be crash or app"), ("write 0 0 1", "write length must be")] {
            #expect(throws: Trace.ParseError.self) { try Trace.parse(text, file: "t.trace") }
            do {
                _ = try Trace.parse(text, file: "t.trace")
            } catch {
                #expect("\(error)".contains(message), "\(error)")
            }
        }
    }
}
