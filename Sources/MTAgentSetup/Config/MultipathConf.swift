/// What setup needs in `multipath.conf`, merged into the admin's file: `defaults` with
/// `user_friendly_names no` and `find_multipaths no`, and a `blacklist` with the system disks'
/// WWIDs. A conflicting value is replaced on its own line, a `blacklist_exceptions` entry for a
/// system disk is commented out, a missing setting is added to the section that should hold it
/// (or a new section at the end); nothing else in the file changes.
enum MultipathConf {
    static let settings: [(key: String, value: String)] = [("user_friendly_names", "no"), ("find_multipaths", "no")]

    struct Blacklisted: Equatable {
        var wwid: String
        /// Which disk, for the comment next to it ("sda, holds /").
        var what: String
    }

    static let header = [
        "# multipath.conf written by mt-agent setup (master target): maps are named by WWID and the",
        "# system disk is never taken over by multipathd. Add your own settings; setup keeps them.",
    ]

    /// The merged text and one line per change; no changes means the file is already right.
    static func merge(_ existing: String?, path: String, blacklist: [Blacklisted]) throws(SetupError) -> (text: String, changes: [String]) {
        var config = try BraceConfig(existing ?? header.joined(separator: "\n") + "\n", dialect: .multipath, path: path)
        var changes: [String] = []
        // One edit at a time, parsing again after each: positions stay simple and every edit
        // sees the file as it now is.
        while let change = try nextEdit(&config, blacklist: blacklist, path: path) {
            changes.append(change)
            guard changes.count < 100 else { break }
        }
        return (config.text, changes)
    }

    /// Applies the first edit the file still needs and says what it did; nil when none is left.
    private static func nextEdit(_ config: inout BraceConfig, blacklist: [Blacklisted], path: String) throws(SetupError) -> String? {
        let defaults = config.sections(named: "defaults")
        for (key, value) in settings {
            let existing = defaults.flatMap(\.entries).filter { $0.key == key }
            if let wrong = existing.first(where: { $0.unquoted != [value] }) {
                config.replaceValue(of: wrong, with: value)
                try reparse(&config, path)
                return "defaults: \(key) \(wrong.values.joined(separator: " ")) → \(value)"
            }
            if existing.isEmpty {
                if let section = defaults.first {
                    config.insert([config.childIndent(of: section) + "\(key) \(value)"], beforeCloseOf: section)
                    try reparse(&config, path)
                    return "defaults: add \(key) \(value)"
                }
                let unit = config.indentUnit
                config.append(["defaults {"] + settings.map { unit + "\($0.key) \($0.value)" } + ["}"])
                try reparse(&config, path)
                return "add a defaults section: " + settings.map { "\($0.key) \($0.value)" }.joined(separator: ", ")
            }
        }

        let wwids = Set(blacklist.map(\.wwid))
        for section in config.sections(named: "blacklist_exceptions") {
            if let exception = section.entries.first(where: { $0.key == "wwid" && $0.unquoted.first.map(normalize).map(wwids.contains) == true }) {
                let wwid = normalize(exception.unquoted.first ?? "")
                if config.ownsItsLines(exception) {
                    let indent = String(config.lines[exception.start.line].prefix { $0 == " " || $0 == "\t" })
                    config.commentOut(exception, note: [indent + "# mt-agent setup: a system disk must never be a multipath map"])
                } else {
                    config.replace(exception, with: "")
                }
                try reparse(&config, path)
                return "blacklist_exceptions: comment out wwid \(wwid) (a system disk)"
            }
        }

        let listed = Set(
            config.sections(named: "blacklist").flatMap(\.entries).filter { $0.key == "wwid" }
                .compactMap { $0.unquoted.first.map(normalize) })
        for disk in blacklist where !listed.contains(disk.wwid) {
            let lines = { (indent: String) in
                [indent + "# mt-agent setup: \(disk.what): never a multipath map", indent + "wwid \"\(disk.wwid)\""]
            }
            if let section = config.sections(named: "blacklist").first {
                config.insert(lines(config.childIndent(of: section)), beforeCloseOf: section)
            } else {
                config.append(["blacklist {"] + lines(config.indentUnit) + ["}"])
            }
            try reparse(&config, path)
            return "blacklist: add wwid \(disk.wwid) (\(disk.what))"
        }
        return nil
    }

    /// A blacklist wwid is a regular expression; `^3600…$` names the same disk as `3600…`.
    static func normalize(_ value: String) -> String {
        var v = Substring(value)
        if v.hasPrefix("^") { v = v.dropFirst() }
        if v.hasSuffix("$") { v = v.dropLast() }
        return String(v)
    }

    private static func reparse(_ config: inout BraceConfig, _ path: String) throws(SetupError) {
        config = try BraceConfig(config.text, dialect: .multipath, path: path)
    }
}
