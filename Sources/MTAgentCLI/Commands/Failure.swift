import ArgumentParser
import Glibc

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
