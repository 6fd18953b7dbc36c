/// One line of `/proc/self/mountinfo` (proc(5)).
public struct MountEntry: Sendable, Equatable {
    public var devno: String
    public var mountPoint: String
    public var fsType: String
    public var source: String
    public var readOnly: Bool
}

public enum MountInfo {
    /// Parses mountinfo text. Lines that do not have the documented shape are skipped: a
    /// half-read line must not make discovery fail.
    public static func parse(_ text: String) -> [MountEntry] {
        text.split(separator: "\n").compactMap { line in
            let fields = line.split(separator: " ", omittingEmptySubsequences: true)
            guard fields.count >= 10, let dash = fields.firstIndex(of: "-"), dash >= 6, dash + 2 < fields.count else {
                return nil
            }
            let options = fields[5].split(separator: ",")
            return MountEntry(
                devno: String(fields[2]),
                mountPoint: unescape(String(fields[4])),
                fsType: String(fields[dash + 1]),
                source: unescape(String(fields[dash + 2])),
                readOnly: options.contains("ro"))
        }
    }

    /// The kernel (mountinfo, swaps) and fstab escape space, tab, newline and backslash as `\NNN` octal.
    public static func unescape(_ s: String) -> String {
        guard s.contains("\\") else { return s }
        var out: [UInt8] = []
        let bytes = Array(s.utf8)
        var i = 0
        while i < bytes.count {
            if bytes[i] == UInt8(ascii: "\\"), i + 3 < bytes.count {
                let digits = bytes[(i + 1)...(i + 3)]
                if digits.allSatisfy({ (0x30...0x37).contains($0) }) {
                    let value = digits.reduce(0) { $0 * 8 + Int($1 - 0x30) }
                    out.append(UInt8(truncatingIfNeeded: value))
                    i += 4
                    continue
                }
            }
            out.append(bytes[i])
            i += 1
        }
        return String(decoding: out, as: UTF8.self)
    }
}

/// One active swap area from `/proc/swaps`.
public struct SwapEntry: Sendable, Equatable {
    public var filename: String
    public var type: String
}

public enum Swaps {
    public static func parse(_ text: String) -> [SwapEntry] {
        text.split(separator: "\n").dropFirst().compactMap { line in
            let fields = line.split(whereSeparator: { $0 == " " || $0 == "\t" })
            guard fields.count >= 2 else { return nil }
            return SwapEntry(filename: MountInfo.unescape(String(fields[0])), type: String(fields[1]))
        }
    }
}
