/// A config file of nested `name { … }` sections — `multipath.conf` (`key value` lines) and
/// `lvm.conf` (`key = value`, arrays in `[ … ]`) — parsed only as far as setup's edits need.
/// The lines stay exactly as written: an edit replaces or inserts a few lines and everything
/// else (comments, order, spacing, the admin's settings) is kept byte for byte.
struct BraceConfig {
    enum Dialect {
        /// `key value…` up to the end of the line; comments start with `#` or `!`.
        case multipath
        /// `key = value`, where a value is a number, a string or a `[ … ]` array that may span
        /// lines; comments start with `#`.
        case lvm
    }

    struct Position: Equatable, Comparable {
        var line: Int
        var column: Int
        static func < (a: Position, b: Position) -> Bool { (a.line, a.column) < (b.line, b.column) }
    }

    struct Section {
        var name: String
        /// Where the name is; nil for the file's top level.
        var header: Position?
        /// The closing `}`; nil for the top level.
        var close: Position?
        var sections: [Section] = []
        var entries: [Entry] = []
    }

    struct Entry {
        var key: String
        var start: Position
        /// Just after the last character of the value.
        var end: Position
        /// Where the value's first token starts (nil when it has none).
        var valueStart: Position?
        /// The value's tokens as written (strings keep their quotes; array brackets and commas dropped).
        var values: [String]

        /// The values with quotes removed.
        var unquoted: [String] { values.map(BraceConfig.unquote) }
    }

    let dialect: Dialect
    private(set) var lines: [String]
    private(set) var endsWithNewline: Bool
    private(set) var top: Section

    init(_ text: String, dialect: Dialect, path: String) throws(SetupError) {
        self.dialect = dialect
        var lines = text.split(separator: "\n", omittingEmptySubsequences: false).map(String.init)
        endsWithNewline = text.hasSuffix("\n") || text.isEmpty
        if endsWithNewline && !lines.isEmpty { lines.removeLast() }
        self.lines = lines
        self.top = Section(name: "")
        var parser = Parser(lines: lines, dialect: dialect, path: path)
        self.top = try parser.parse()
    }

    var text: String {
        lines.joined(separator: "\n") + (endsWithNewline && !lines.isEmpty ? "\n" : "")
    }

    /// The top-level sections with this name, in file order.
    func sections(named name: String) -> [Section] {
        top.sections.filter { $0.name == name }
    }

    // MARK: Edits (the caller parses again after each one)

    /// The indentation one level inside `section`.
    func childIndent(of section: Section) -> String {
        let firstChild = [section.entries.first?.start, section.sections.first?.header].compactMap { $0 }.min()
        // A child on a line of its own shows the indentation; one on the header's line does not.
        if let first = firstChild, first.line != section.header?.line {
            return String(lines[first.line].prefix { $0 == " " || $0 == "\t" })
        }
        let own = section.header.map { String(lines[$0.line].prefix { $0 == " " || $0 == "\t" }) } ?? ""
        return own + indentUnit
    }

    /// A tab when the file indents with tabs (RHEL's files do), else four spaces.
    var indentUnit: String {
        lines.contains { $0.hasPrefix("\t") } ? "\t" : "    "
    }

    /// Puts `newLines` (already indented) just before the section's closing brace.
    mutating func insert(_ newLines: [String], beforeCloseOf section: Section) {
        guard let close = section.close else { return append(newLines) }
        let line = lines[close.line]
        let before = Self.prefix(line, close.column)
        if before.allSatisfy({ $0 == " " || $0 == "\t" }) {
            lines.insert(contentsOf: newLines, at: close.line)
        } else {
            // `name { key value }` on one line: break the closing brace onto its own line.
            let indent = section.header.map { String(lines[$0.line].prefix { $0 == " " || $0 == "\t" }) } ?? ""
            var trimmed = String(before)
            while trimmed.last == " " || trimmed.last == "\t" { trimmed.removeLast() }
            let rest = Self.dropping(line, close.column)
            lines.replaceSubrange(close.line...close.line, with: [trimmed] + newLines + [indent + rest])
        }
    }

    /// Adds lines at the end of the file, after a blank line.
    mutating func append(_ newLines: [String]) {
        if let last = lines.last, !last.allSatisfy({ $0 == " " || $0 == "\t" }) { lines.append("") }
        lines += newLines
        endsWithNewline = true
    }

    /// Replaces the entry's value (from its first value token to its end) with `value`, keeping
    /// the key, the spacing before the value and anything after it on the line (a comment).
    mutating func replaceValue(of entry: Entry, with value: String) {
        guard let start = entry.valueStart else {
            return replace(entry, with: entry.key + " " + value)
        }
        let head = Self.prefix(lines[start.line], start.column)
        let tail = Self.dropping(lines[entry.end.line], entry.end.column)
        lines.replaceSubrange(start.line...entry.end.line, with: [head + value + tail])
    }

    /// True when the entry has its lines to itself (only blanks before it and blanks or a
    /// comment after it), so it can be commented out line by line.
    func ownsItsLines(_ entry: Entry) -> Bool {
        let before = Self.prefix(lines[entry.start.line], entry.start.column)
        let after = Self.dropping(lines[entry.end.line], entry.end.column).drop { $0 == " " || $0 == "\t" }
        return before.allSatisfy { $0 == " " || $0 == "\t" } && (after.isEmpty || after.first == "#" || after.first == "!")
    }

    /// Comments the entry's lines out, prefixing `# ` after their indentation, and puts `note`
    /// (a comment, already indented) and `replacement` after them.
    mutating func commentOut(_ entry: Entry, note: [String] = [], replacement: [String] = []) {
        let commented = lines[entry.start.line...entry.end.line].map { line -> String in
            let indent = line.prefix { $0 == " " || $0 == "\t" }
            return indent + "# " + line.dropFirst(indent.count)
        }
        lines.replaceSubrange(entry.start.line...entry.end.line, with: note + commented + replacement)
    }

    /// Replaces the entry (key to end of value) with `text`, keeping what shares its lines.
    mutating func replace(_ entry: Entry, with text: String) {
        let head = Self.prefix(lines[entry.start.line], entry.start.column)
        let tail = Self.dropping(lines[entry.end.line], entry.end.column)
        lines.replaceSubrange(entry.start.line...entry.end.line, with: [head + text + tail])
    }

    /// Columns count unicode scalars, as the tokenizer does.
    static func prefix(_ line: String, _ column: Int) -> String {
        String(String.UnicodeScalarView(line.unicodeScalars.prefix(column)))
    }

    static func dropping(_ line: String, _ column: Int) -> String {
        String(String.UnicodeScalarView(line.unicodeScalars.dropFirst(column)))
    }

    static func unquote(_ token: String) -> String {
        guard token.count >= 2, token.first == "\"", token.last == "\"" else { return token }
        var out = ""
        var escaped = false
        for c in token.dropFirst().dropLast() {
            if escaped {
                out.append(c)
                escaped = false
            } else if c == "\\" {
                escaped = true
            } else {
                out.append(c)
            }
        }
        return out
    }
}

// MARK: - Parsing

private struct Token {
    enum Kind: Equatable { case word, string, open, close, equals, openBracket, closeBracket, comma, newline }
    var kind: Kind
    var text: String
    var start: BraceConfig.Position
    var end: BraceConfig.Position
}

private struct Parser {
    let lines: [String]
    let dialect: BraceConfig.Dialect
    let path: String
    private var tokens: [Token] = []
    private var next = 0

    init(lines: [String], dialect: BraceConfig.Dialect, path: String) {
        self.lines = lines
        self.dialect = dialect
        self.path = path
    }

    mutating func parse() throws(SetupError) -> BraceConfig.Section {
        tokens = try tokenize()
        return try section(name: "", header: nil)
    }

    private func fail(_ line: Int, _ reason: String) -> SetupError {
        .unparsable(path: path, line: line + 1, reason: reason)
    }

    private func tokenize() throws(SetupError) -> [Token] {
        var tokens: [Token] = []
        for (n, line) in lines.enumerated() {
            let chars = Array(line.unicodeScalars)
            var i = 0
            func pos(_ c: Int) -> BraceConfig.Position { .init(line: n, column: c) }
            while i < chars.count {
                let c = chars[i]
                if c == " " || c == "\t" || c == "\r" {
                    i += 1
                } else if c == "#" || (c == "!" && dialect == .multipath) {
                    break
                } else if c == "\"" {
                    var j = i + 1
                    var escaped = false
                    while j < chars.count {
                        if escaped {
                            escaped = false
                        } else if chars[j] == "\\" {
                            escaped = true
                        } else if chars[j] == "\"" {
                            break
                        }
                        j += 1
                    }
                    guard j < chars.count else { throw fail(n, "a string is not closed (missing \")") }
                    tokens.append(Token(kind: .string, text: String(String.UnicodeScalarView(chars[i...j])), start: pos(i), end: pos(j + 1)))
                    i = j + 1
                } else if let kind = Self.punctuation(c, dialect) {
                    tokens.append(Token(kind: kind, text: String(c), start: pos(i), end: pos(i + 1)))
                    i += 1
                } else {
                    var j = i
                    while j < chars.count {
                        let d = chars[j]
                        if d == " " || d == "\t" || d == "\r" || d == "\"" || d == "#" || (d == "!" && dialect == .multipath)
                            || Self.punctuation(d, dialect) != nil
                        {
                            break
                        }
                        j += 1
                    }
                    tokens.append(Token(kind: .word, text: String(String.UnicodeScalarView(chars[i..<j])), start: pos(i), end: pos(j)))
                    i = j
                }
            }
            tokens.append(Token(kind: .newline, text: "\n", start: pos(chars.count), end: pos(chars.count)))
        }
        return tokens
    }

    private static func punctuation(_ c: Unicode.Scalar, _ dialect: BraceConfig.Dialect) -> Token.Kind? {
        switch c {
        case "{": .open
        case "}": .close
        case "=" where dialect == .lvm: .equals
        case "[" where dialect == .lvm: .openBracket
        case "]" where dialect == .lvm: .closeBracket
        case "," where dialect == .lvm: .comma
        default: nil
        }
    }

    private mutating func skipNewlines() {
        while next < tokens.count && tokens[next].kind == .newline { next += 1 }
    }

    private mutating func section(name: String, header: BraceConfig.Position?) throws(SetupError) -> BraceConfig.Section {
        var result = BraceConfig.Section(name: name, header: header)
        while true {
            skipNewlines()
            guard next < tokens.count else {
                if let header { throw fail(header.line, "section '\(name)' is never closed (missing })") }
                return result
            }
            let token = tokens[next]
            next += 1
            switch token.kind {
            case .close:
                guard header != nil else { throw fail(token.start.line, "'}' without a matching '{'") }
                result.close = token.start
                return result
            case .word:
                var lookahead = next
                while lookahead < tokens.count && tokens[lookahead].kind == .newline { lookahead += 1 }
                if lookahead < tokens.count && tokens[lookahead].kind == .open {
                    next = lookahead + 1
                    result.sections.append(try section(name: token.text, header: token.start))
                } else if dialect == .lvm {
                    result.entries.append(try lvmEntry(key: token))
                } else {
                    result.entries.append(multipathEntry(key: token))
                }
            default:
                throw fail(token.start.line, "unexpected '\(token.text)'")
            }
        }
    }

    /// `key value…` to the end of the line (or a `}` on it).
    private mutating func multipathEntry(key: Token) -> BraceConfig.Entry {
        var values: [String] = []
        var end = key.end
        let valueStart = next < tokens.count && tokens[next].kind != .newline && tokens[next].kind != .close ? tokens[next].start : nil
        while next < tokens.count, tokens[next].kind != .newline, tokens[next].kind != .close {
            values.append(tokens[next].text)
            end = tokens[next].end
            next += 1
        }
        return .init(key: key.text, start: key.start, end: end, valueStart: valueStart, values: values)
    }

    /// `key = value` where value is a word, a string or an array.
    private mutating func lvmEntry(key: Token) throws(SetupError) -> BraceConfig.Entry {
        skipNewlines()
        guard next < tokens.count, tokens[next].kind == .equals else {
            throw fail(key.start.line, "expected '=' after '\(key.text)'")
        }
        next += 1
        skipNewlines()
        guard next < tokens.count else { throw fail(key.start.line, "'\(key.text) =' has no value") }
        let first = tokens[next]
        next += 1
        switch first.kind {
        case .word, .string:
            return .init(key: key.text, start: key.start, end: first.end, valueStart: first.start, values: [first.text])
        case .openBracket:
            var values: [String] = []
            while true {
                skipNewlines()
                guard next < tokens.count else { throw fail(first.start.line, "array of '\(key.text)' is not closed (missing ])") }
                let t = tokens[next]
                next += 1
                switch t.kind {
                case .closeBracket:
                    return .init(key: key.text, start: key.start, end: t.end, valueStart: first.start, values: values)
                case .comma: continue
                case .word, .string: values.append(t.text)
                default: throw fail(t.start.line, "unexpected '\(t.text)' in the array of '\(key.text)'")
                }
            }
        default:
            throw fail(first.start.line, "'\(key.text) =' has no value")
        }
    }
}
