import ArgumentParser
import MTAgentCore

/// How every command that runs checks ends: the report as JSON or as the PASS/WARN/FAIL table
/// (plus an optional last line), then exit 1 when a check failed.
func finish(_ report: CheckReport, json: Bool, verdict: String? = nil) throws {
    if json {
        print(try JSONOutput.encode(report))
    } else {
        print(CheckTable.render(report), terminator: "")
        if let verdict { print(verdict) }
    }
    if report.exitCode != 0 { throw ExitCode(report.exitCode) }
}
