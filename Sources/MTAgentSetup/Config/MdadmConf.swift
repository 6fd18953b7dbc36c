/// `mdadm.conf`, merged: `AUTO -all` (assemble only the arrays listed in the file) and an ARRAY
/// line for each of the system's own arrays. mdadm reads only the first AUTO line, so a
/// different first one is commented out and replaced in place; the admin's ARRAY, MAILADDR,
/// HOMEHOST… lines stay as they are.
enum MdadmConf {
    static let header = [
        "# mdadm.conf written by mt-agent setup (master target): only the arrays listed here are",
        "# assembled; replicated disks carry the source machine's md metadata.",
    ]

    static let note = [
        "# mt-agent setup: assemble only the arrays listed in this file (ARRAY lines); replicated",
        "# disks carry the source machine's md metadata and must never be assembled here.",
    ]

    /// A logical line: a keyword line and the indented lines that continue it.
    struct Statement {
        var keyword: String
        var words: [String]
        var lines: ClosedRange<Int>
    }

    static func statements(_ lines: [String]) -> [Statement] {
        var result: [Statement] = []
        for (n, line) in lines.enumerated() {
            let code = line.split(separator: "#", maxSplits: 1, omittingEmptySubsequences: false).first.map(String.init) ?? ""
            let words = code.split(whereSeparator: { $0 == " " || $0 == "\t" }).map(String.init)
            if words.isEmpty { continue }
            if line.first == " " || line.first == "\t", var last = result.popLast() {
                last.words += words
                last.lines = last.lines.lowerBound...n
                result.append(last)
            } else {
                result.append(Statement(keyword: words[0].uppercased(), words: Array(words.dropFirst()), lines: n...n))
            }
        }
        return result
    }

    /// mdadm accepts keywords abbreviated to three letters, in any case.
    static func isKeyword(_ word: String, _ keyword: String) -> Bool {
        word.count >= 3 && keyword.hasPrefix(word)
    }

    /// `UUID=…` of an ARRAY statement, normalized (lowercase, no separators).
    static func uuid(_ statement: Statement) -> String? {
        for word in statement.words where word.lowercased().hasPrefix("uuid=") {
            return normalizeUUID(String(word.dropFirst(5)))
        }
        return nil
    }

    static func normalizeUUID(_ uuid: String) -> String {
        uuid.lowercased().filter { $0.isHexDigit }
    }

    /// `arrays`: the ARRAY lines the system's arrays need (as `mdadm --detail --brief` prints them).
    static func merge(_ existing: String?, arrays: [String]) -> (text: String, changes: [String]) {
        var text = existing ?? header.joined(separator: "\n") + "\n"
        var lines = text.split(separator: "\n", omittingEmptySubsequences: false).map(String.init)
        if text.hasSuffix("\n") { lines.removeLast() }
        var changes: [String] = []

        let autos = statements(lines).filter { isKeyword($0.keyword, "AUTO") }
        if let first = autos.first {
            if first.words != ["-all"] {
                let old = lines[first.lines].map { "#" + $0 }
                lines.replaceSubrange(first.lines, with: note + old + ["AUTO -all"])
                changes.append("AUTO \(first.words.joined(separator: " ")) → AUTO -all")
            }
        } else {
            if let last = lines.last, !last.isEmpty { lines.append("") }
            // A file setup creates says it in its header already.
            lines += (existing == nil ? [] : note) + ["AUTO -all"]
            changes.append("add AUTO -all")
        }

        let listed = Set(statements(lines).filter { isKeyword($0.keyword, "ARRAY") }.compactMap(uuid))
        for array in arrays {
            let statement = statements([array]).first
            guard let id = statement.flatMap(uuid), !listed.contains(id) else { continue }
            lines.append(array)
            changes.append("add \(array)")
        }
        text = lines.joined(separator: "\n") + "\n"
        return (text, changes)
    }
}
