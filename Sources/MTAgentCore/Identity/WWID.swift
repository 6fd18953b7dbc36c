/// The disk's world-wide identifier in the form `scsi_id --whitelisted` prints and
/// `/dev/disk/by-id/scsi-…` and `multipath -ll` use, so admins can match mt-agent's output
/// against the tools they already know.
public enum WWID {
    /// Picks the designator `scsi_id` would pick (logical-unit association only; NAA-6, then NAA-5,
    /// then any NAA, then EUI-64, then T10 vendor ID) and renders it with its type prefix:
    /// `3` + NAA hex, `2` + EUI hex, `1` + T10 text with whitespace runs as `_`.
    public static func from(designators: [Designator]) -> String? {
        let lun = designators.filter { $0.association == .lun }
        let binaryNAA = lun.filter { $0.type == .naa && $0.codeSet == .binary }
        if let d = binaryNAA.first(where: { $0.naaFormat == 6 })
            ?? binaryNAA.first(where: { $0.naaFormat == 5 })
            ?? binaryNAA.first
        {
            return "3" + d.value
        }
        if let d = lun.first(where: { $0.type == .eui64 && $0.codeSet == .binary }) {
            return "2" + d.value
        }
        if let d = lun.first(where: { $0.type == .t10 }), !d.value.isEmpty {
            return "1" + underscoreWhitespace(d.value)
        }
        return nil
    }

    /// Reads the kernel's `wwid` attribute (`naa.6000c29…`, `eui.…`, `t10.…`): the evidence used
    /// when a kernel exposes no binary VPD page, and what NVMe namespaces carry.
    public static func from(kernelWWID raw: String) -> String? {
        let s = raw.trimmingWhitespace()
        guard let dot = s.firstIndex(of: ".") else { return nil }
        let scheme = s[..<dot].lowercased()
        let rest = String(s[s.index(after: dot)...])
        guard !rest.isEmpty else { return nil }
        switch scheme {
        case "naa": return "3" + rest.lowercased()
        case "eui": return "2" + rest.lowercased()
        case "t10": return "1" + underscoreWhitespace(rest)
        default: return nil
        }
    }

    /// True when the identity names a VMware virtual disk (`disk.EnableUUID=TRUE`): NAA with
    /// VMware's IEEE company id 00:0c:29 (`6000c29…`).
    public static func isVMwareVirtualDisk(_ wwid: String) -> Bool {
        wwid.hasPrefix("36000c29")
    }

    static func underscoreWhitespace(_ s: String) -> String {
        s.split(whereSeparator: { $0 == " " || $0 == "\t" }).joined(separator: "_")
    }
}

extension String {
    /// Trims spaces, tabs, newlines and NULs: sysfs attributes end in `\n`, SCSI strings are padded.
    public func trimmingWhitespace() -> String {
        let isPad: (Character) -> Bool = { $0 == " " || $0 == "\n" || $0 == "\t" || $0 == "\r" || $0 == "\0" }
        guard let first = firstIndex(where: { !isPad($0) }), let last = lastIndex(where: { !isPad($0) }) else {
            return ""
        }
        return String(self[first...last])
    }
}
