import Glibc
import MTAgentCore

/// A replay trace (docs/sender.md): one operation per line.
///
///     # comment
///     write OFFSET LENGTH SEED   LENGTH bytes of SplitMix64(SEED) output at OFFSET (decimal or 0x hex)
///     tag crash NAME             a crash-consistent tag
///     tag app NAME               an app-consistent tag
///     sleep MILLISECONDS
public struct Trace: Sendable, Equatable {
    public enum Op: Sendable, Equatable {
        case write(offset: UInt64, length: Int, seed: UInt64)
        case tag(kind: TagKind, name: String)
        case sleep(millis: Int)
    }

    public var ops: [Op]
    /// The source line of each op, for error messages ("FILE:LINE").
    public var lines: [String]

    public struct ParseError: Error, CustomStringConvertible {
        public var description: String
    }

    public static func parse(_ text: String, file: String = "trace") throws -> Trace {
        var ops: [Op] = []
        var lines: [String] = []
        for (i, raw) in text.split(separator: "\n", omittingEmptySubsequences: false).enumerated() {
            let line = raw.split(separator: "#", maxSplits: 1, omittingEmptySubsequences: false).first ?? ""
            let words = line.split(whereSeparator: { $0 == " " || $0 == "\t" }).map(String.init)
            guard let verb = words.first else { continue }
            let where_ = "\(file):\(i + 1)"
            func number(_ s: String) throws -> UInt64 {
                let v = s.hasPrefix("0x") ? UInt64(s.dropFirst(2), radix: 16) : UInt64(s)
                guard let v else { throw ParseError(description: "\(where_): '\(s)' is not a number") }
                return v
            }
            switch (verb, words.count) {
            case ("write", 4):
                let length = try number(words[2])
                guard length > 0, length <= 64 << 20 else { throw ParseError(description: "\(where_): write length must be 1 byte to 64 MiB") }
                ops.append(.write(offset: try number(words[1]), length: Int(length), seed: try number(words[3])))
            case ("tag", 3):
                guard let kind: TagKind = words[1] == "crash" ? .crash : words[1] == "app" ? .app : nil else {
                    throw ParseError(description: "\(where_): tag kind must be crash or app, not '\(words[1])'")
                }
                ops.append(.tag(kind: kind, name: words[2]))
            case ("sleep", 2):
                ops.append(.sleep(millis: Int(try number(words[1]))))
            default:
                throw ParseError(description: "\(where_): expected 'write OFFSET LENGTH SEED', 'tag crash|app NAME' or 'sleep MS', got '\(line.trimmingCharacters())'")
            }
            lines.append(where_)
        }
        return Trace(ops: ops, lines: lines)
    }

    /// The bytes a `write … SEED` line stands for: SplitMix64 outputs, little-endian, truncated.
    public static func data(seed: UInt64, count: Int) -> [UInt8] {
        var state = seed
        var out = [UInt8](repeating: 0, count: count)
        out.withUnsafeMutableBytes { raw in
            var i = 0
            while i < count {
                state &+= 0x9E37_79B9_7F4A_7C15
                var z = state
                z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
                z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
                z ^= z >> 31
                if i + 8 <= count {
                    raw.storeBytes(of: z.littleEndian, toByteOffset: i, as: UInt64.self)
                } else {
                    for b in 0..<(count - i) { raw[i + b] = UInt8(truncatingIfNeeded: z >> (8 * UInt64(b))) }
                }
                i += 8
            }
        }
        return out
    }
}

extension Substring {
    func trimmingCharacters() -> String {
        String(drop(while: { $0 == " " || $0 == "\t" }).reversed().drop(while: { $0 == " " || $0 == "\t" }).reversed())
    }
}
