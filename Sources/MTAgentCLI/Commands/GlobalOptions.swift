import ArgumentParser
import Logging
import MTAgentCore
import MTAgentLinux

/// Options every command that reads the system takes.
struct SystemOptions: ParsableArguments {
    @Option(
        name: .long,
        help: ArgumentHelp(
            "Read the machine from this directory instead of / (a tree made by 'mt-agent collect').",
            valueName: "dir"))
    var root: String = "/"

    @Option(name: .customLong("log-level"), help: "How much to log to stderr.")
    var logLevel: Logger.Level = .warning

    /// The machine's inventory; a failure to read it ends the command with one error line.
    func inventory() throws -> Inventory {
        do {
            return try Discovery.forRoot(root, logger: makeLogger()).inventory()
        } catch {
            throw fail("\(error)")
        }
    }

    /// Logs go to stderr so stdout stays clean for tables and JSON.
    func makeLogger() -> Logger {
        var logger = Logger(label: "mt-agent", factory: LogOutput.handler)
        logger.logLevel = logLevel
        return logger
    }
}

struct OutputOptions: ParsableArguments {
    @Flag(name: .long, help: "Print machine-readable JSON instead of a table.")
    var json = false
}

extension Logger.Level: @retroactive ExpressibleByArgument {}
