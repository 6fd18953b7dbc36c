import MTAgentCore
import Testing

@Suite struct IdentifierTests {
    @Test(arguments: ["", ".", "..", "a/b", "/", "../../../canary", "-a", ".a", "_a", String(repeating: "a", count: 65),
                      "café", "a b", "a\u{0}b", "a\nb", "a\\b", "ａ"])
    func refused(_ value: String) {
        #expect(Identifier(value) == nil, "\(value.debugDescription) must not be an id")
        #expect(throws: IdentifierError(kind: .pair, value: value)) { try Identifier(validating: value, kind: .pair) }
    }

    @Test(arguments: ["a", "Z", "0", "p1", "sql01.data-disk_2", "a..b", "A-", String(repeating: "a", count: 64)])
    func accepted(_ value: String) throws {
        #expect(try Identifier(validating: value).value == value)
    }

    @Test func theMessageNamesTheGrammarAndEscapesControlCharacters() {
        let message = IdentifierError(kind: .group, value: "x\ny").description
        #expect(message.contains(Identifier.grammar))
        #expect(message.hasPrefix("group id \"x\\u{a}y\""))
        #expect(!message.contains("\n"))
    }
}
