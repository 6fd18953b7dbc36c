/// A pair or group id: a name chosen by a sender or an admin, which the master target also uses as a
/// directory name on the retention volume. One grammar (docs/PROTOCOL.md §4) keeps every id a single
/// harmless path component: `[A-Za-z0-9][A-Za-z0-9._-]{0,63}` — ASCII only, never empty, never `.` or
/// `..`, no `/`, no leading `.` or `-`, at most 64 bytes.
///
/// Only a value of this type may become a path component (`RetentionLayout`); a `String` id from the
/// wire, the command line or a catalog row is validated with `init(validating:)` first.
public struct Identifier: Sendable, Hashable, Comparable, Codable, CustomStringConvertible, ExpressibleByStringLiteral {
    public let value: String

    /// The grammar, as the docs and error messages state it.
    public static let grammar = "[A-Za-z0-9][A-Za-z0-9._-]{0,63}"
    public static let maxLength = 64

    /// Throws `IdentifierError` naming the grammar when `value` does not match it.
    public init(validating value: String, kind: IdentifierError.Kind = .id) throws(IdentifierError) {
        guard Self.isValid(value) else { throw IdentifierError(kind: kind, value: value) }
        self.value = value
    }

    /// Nil when `value` does not match the grammar.
    public init?(_ value: String) {
        guard Self.isValid(value) else { return nil }
        self.value = value
    }

    /// A literal in the source (fixed directory names, tests): a programming error if it breaks the grammar.
    /// Only literals: a `String` from outside must go through `init(validating:)`.
    public init(stringLiteral value: StaticString) {
        let text = value.description
        precondition(Self.isValid(text), "the literal id \(text) does not match \(Self.grammar)")
        self.value = text
    }

    public static func isValid(_ value: String) -> Bool {
        let bytes = Array(value.utf8)
        guard let first = bytes.first, bytes.count <= maxLength, isAlphanumeric(first) else { return false }
        return bytes.allSatisfy { isAlphanumeric($0) || $0 == UInt8(ascii: ".") || $0 == UInt8(ascii: "_") || $0 == UInt8(ascii: "-") }
    }

    private static func isAlphanumeric(_ b: UInt8) -> Bool {
        (b >= UInt8(ascii: "a") && b <= UInt8(ascii: "z")) || (b >= UInt8(ascii: "A") && b <= UInt8(ascii: "Z"))
            || (b >= UInt8(ascii: "0") && b <= UInt8(ascii: "9"))
    }

    public var description: String { value }
    public static func < (a: Identifier, b: Identifier) -> Bool { a.value < b.value }

    public init(from decoder: any Decoder) throws {
        let value = try decoder.singleValueContainer().decode(String.self)
        guard Self.isValid(value) else {
            throw DecodingError.dataCorrupted(.init(codingPath: decoder.codingPath, debugDescription: IdentifierError(kind: .id, value: value).description))
        }
        self.value = value
    }

    public func encode(to encoder: any Encoder) throws {
        var container = encoder.singleValueContainer()
        try container.encode(value)
    }
}

/// An id that does not match `Identifier.grammar`; the message quotes it safely and states the grammar.
public struct IdentifierError: Error, Sendable, Equatable, CustomStringConvertible {
    public enum Kind: String, Sendable {
        case id, pair = "pair id", group = "group id"
    }
    public var kind: Kind
    public var value: String

    public init(kind: Kind, value: String) { self.kind = kind; self.value = value }

    public var description: String {
        "\(kind.rawValue) \(Self.quoted(value)) is not a valid name: use 1 to \(Identifier.maxLength) ASCII letters, digits, "
            + "'.', '_' or '-', starting with a letter or digit (\(Identifier.grammar))"
    }

    /// The value in quotes with control characters escaped and cut at 80 characters, so a hostile id
    /// cannot forge log lines.
    static func quoted(_ value: String) -> String {
        var out = ""
        for scalar in value.unicodeScalars.prefix(80) {
            out += scalar.value < 0x20 || scalar.value == 0x7f ? "\\u{\(String(scalar.value, radix: 16))}" : String(scalar)
        }
        return "\"" + out + (value.unicodeScalars.count > 80 ? "…" : "") + "\""
    }
}
