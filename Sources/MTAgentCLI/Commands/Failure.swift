import ArgumentParser
import Glibc
import MTAgentCore

/// Prints one clear line to stderr and exits 2: how every command reports that it could not do
/// its job (as opposed to a check that ran and failed, which exits 1).
func fail(_ message: String) -> ExitCode {
    printError("mt-agent: error: \(message)")
    return ExitCode(2)
}

func printError(_ line: String) {
    let text = line + "\n"
    _ = text.withCString { write(STDERR_FILENO, $0, strlen($0)) }
}

/// Refuses a --group or --pair value outside the id grammar (docs/PROTOCOL.md §4) with one line, exit 2:
/// ids become directory names on the retention volume.
func requireIdentifier(_ value: String, _ kind: IdentifierError.Kind, flag: String) throws {
    do { _ = try Identifier(validating: value, kind: kind) } catch { throw fail("\(flag): \(error)") }
}
