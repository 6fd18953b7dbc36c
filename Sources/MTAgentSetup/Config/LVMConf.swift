/// `devices/global_filter` in `lvm.conf`, merged into the admin's file: accept only the system
/// disks (by their `/dev/disk/by-id` names), reject everything else. An existing
/// `global_filter` with another value is commented out (kept for the admin to see) and the new
/// one put after it; every other line stays as it was.
enum LVMConf {
    static let header = [
        "# lvm.conf written by mt-agent setup (master target): LVM uses only the system disks;",
        "# replicated disks carry the source machine's volume groups and must never be activated here.",
    ]

    /// The `global_filter` patterns for these accepted device paths (regular expressions).
    static func filter(accepting patterns: [String]) -> [String] {
        patterns.map { "a|\($0)|" } + ["r|.*|"]
    }

    static func render(_ filter: [String]) -> String {
        "global_filter = [ " + filter.map { "\"\($0)\"" }.joined(separator: ", ") + " ]"
    }

    static func merge(_ existing: String?, path: String, filter: [String]) throws(SetupError) -> (text: String, changes: [String]) {
        var config = try BraceConfig(existing ?? header.joined(separator: "\n") + "\n", dialect: .lvm, path: path)
        var changes: [String] = []
        while let change = try nextEdit(&config, filter: filter, path: path) {
            changes.append(change)
            guard changes.count < 20 else { break }
        }
        return (config.text, changes)
    }

    private static func nextEdit(_ config: inout BraceConfig, filter: [String], path: String) throws(SetupError) -> String? {
        let devices = config.sections(named: "devices")
        let entries = devices.flatMap(\.entries).filter { $0.key == "global_filter" }
        let wanted = entries.filter { $0.unquoted == filter }
        // One right entry and no other: done. LVM takes the last of duplicates; keep just one.
        if wanted.count == 1 && entries.count == 1 { return nil }
        if let other = entries.first(where: { $0.unquoted != filter }) ?? (wanted.count > 1 ? wanted.last : nil) {
            let indent = String(config.lines[other.start.line].prefix { $0 == " " || $0 == "\t" })
            let replacement = wanted.isEmpty ? [indent + render(filter)] : []
            if config.ownsItsLines(other) {
                config.commentOut(
                    other, note: [indent + "# mt-agent setup: replaced; LVM may use only the system disks"],
                    replacement: replacement)
            } else {
                config.replace(other, with: wanted.isEmpty ? render(filter) : "")
            }
            try reparse(&config, path)
            return wanted.isEmpty
                ? "devices: global_filter [\(other.values.joined(separator: ", "))] → the system disks only"
                : "devices: comment out a duplicate global_filter"
        }
        let lines = { (indent: String) in
            [indent + "# mt-agent setup: LVM may use only the system disks; replicated disks carry the source",
             indent + "# machine's volume groups and must never be activated on the master target.",
             indent + render(filter)]
        }
        if let section = devices.first {
            config.insert(lines(config.childIndent(of: section)), beforeCloseOf: section)
        } else {
            config.append(["devices {"] + lines(config.indentUnit) + ["}"])
        }
        try reparse(&config, path)
        return "devices: add global_filter accepting only the system disks"
    }

    /// `devices/use_devicesfile` as set in the file (nil when not set).
    static func useDevicesFile(_ text: String, path: String) throws(SetupError) -> Bool? {
        let config = try BraceConfig(text, dialect: .lvm, path: path)
        guard let entry = config.sections(named: "devices").flatMap(\.entries).last(where: { $0.key == "use_devicesfile" }) else {
            return nil
        }
        return entry.unquoted.first.map { $0 != "0" }
    }

    private static func reparse(_ config: inout BraceConfig, _ path: String) throws(SetupError) {
        config = try BraceConfig(config.text, dialect: .lvm, path: path)
    }
}
