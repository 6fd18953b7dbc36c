// libFuzzer target for the frame codec (docs/PROTOCOL.md §2, §4).
//
// Every input is a byte stream; `FrameRoundTrip.check` decodes it frame by frame, re-encodes each
// frame and decodes it again, and crashes on any difference. `HandshakeFuzz.check` then feeds the
// same bytes to the master target's connection start as a peer would send them (the small frame
// limit before WELCOME, the handshake state machine) and crashes when a frame gets past it
// unauthenticated.
//
// Two builds from this one file:
// - `swift build` (no FUZZING): a replayer, `mt-agent-frame-fuzzer FILE|DIR…`, that runs the
//   check over the given files (directories: every file in them) and prints what each gave.
// - `Scripts/fuzz`: `-sanitize=fuzzer -DFUZZING`: libFuzzer drives `LLVMFuzzerTestOneInput`.
//   SwiftPM links every executable with `--defsym main=<module>_main` (the entry point of its
//   `@main` type, renamed so tests can link the module), which hides libFuzzer's own `main`; so in
//   that build `<module>_main` is defined here and hands over to libFuzzer's `LLVMFuzzerRunDriver`
//   (same flags and behaviour as libFuzzer's `main`).
import MTAgentReplication

@_cdecl("LLVMFuzzerTestOneInput")
public func frameFuzzerTestOneInput(_ data: UnsafePointer<UInt8>?, _ size: Int) -> CInt {
    let bytes = data.map { Array(UnsafeBufferPointer(start: $0, count: size)) } ?? []
    _ = FrameRoundTrip.check(bytes)
    _ = HandshakeFuzz.check(bytes)
    return 0
}

#if FUZZING
@_silgen_name("LLVMFuzzerRunDriver")
func LLVMFuzzerRunDriver(
    _ argc: UnsafeMutablePointer<CInt>,
    _ argv: UnsafeMutablePointer<UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>?>,
    _ callback: @convention(c) (UnsafePointer<UInt8>?, Int) -> CInt
) -> CInt

@_cdecl("mt_agent_frame_fuzzer_main")
public func frameFuzzerMain(
    _ argc: CInt, _ argv: UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>?
) -> CInt {
    var argc = argc
    var argv = argv
    return LLVMFuzzerRunDriver(&argc, &argv, { data, size in frameFuzzerTestOneInput(data, size) })
}
#else
import Foundation

@main
enum FrameFuzzerReplay {
    static func main() {
        let arguments = CommandLine.arguments.dropFirst()
        guard !arguments.isEmpty, !arguments.contains(where: { $0 == "-h" || $0 == "--help" }) else {
            print("usage: mt-agent-frame-fuzzer FILE|DIR…  (replays inputs through the frame round-trip check;")
            print("       build with Scripts/fuzz to fuzz)")
            exit(arguments.isEmpty ? 2 : 0)
        }
        let fm = FileManager.default
        var files: [String] = []
        for argument in arguments {
            var isDirectory: ObjCBool = false
            guard fm.fileExists(atPath: argument, isDirectory: &isDirectory) else {
                FileHandle.standardError.write(Data("mt-agent-frame-fuzzer: \(argument): no such file or directory\n".utf8))
                exit(2)
            }
            if isDirectory.boolValue {
                let names = (try? fm.contentsOfDirectory(atPath: argument)) ?? []
                files += names.sorted().map { argument + "/" + $0 }.filter {
                    var d: ObjCBool = false
                    return fm.fileExists(atPath: $0, isDirectory: &d) && !d.boolValue
                }
            } else {
                files.append(argument)
            }
        }
        var decoded = 0, failed = 0, authenticated = 0
        for file in files {
            guard let data = fm.contents(atPath: file) else {
                FileHandle.standardError.write(Data("mt-agent-frame-fuzzer: cannot read \(file)\n".utf8))
                exit(2)
            }
            let (frames, error) = FrameRoundTrip.check(Array(data))
            let handshake = HandshakeFuzz.check(Array(data))
            if frames > 0 { decoded += 1 }
            if error != nil { failed += 1 }
            if handshake.authenticated { authenticated += 1 }
            print("\(file): \(frames) frame(s)" + (error.map { ", then \($0)" } ?? "")
                  + "; handshake: " + (handshake.authenticated ? "authenticated, \(handshake.delivered) delivered" : "not authenticated")
                  + (handshake.refusal.map { ", refused \($0)" } ?? ""))
        }
        print("\(files.count) input(s): \(decoded) decoded at least one frame, \(failed) ended in a frame error, "
              + "\(authenticated) passed the handshake; no round-trip mismatch, no frame past the handshake unauthenticated")
    }
}
#endif
