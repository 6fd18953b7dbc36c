import ArgumentParser
import MTAgentLinux

struct CollectCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "collect",
        abstract: "Capture the parts of /sys and /proc that discovery reads, for support or as a test fixture.",
        discussion: """
            Symlinks are kept as symlinks and binary attributes (VPD pages) byte for byte, so that \
            'mt-agent disks --root PATH' on any machine prints this machine's inventory (filesystem \
            fields from blkid aside). A PATH ending in .tar.gz or .tgz is written as a tarball.

            Examples:
              mt-agent collect /var/tmp/mt-capture
              mt-agent collect /var/tmp/mt-capture.tar.gz
            """)

    @Argument(help: ArgumentHelp("A new directory, or a .tar.gz file.", valueName: "path"))
    var path: String

    @OptionGroup var system: SystemOptions
    @OptionGroup var output: OutputOptions

    func run() throws {
        let logger = system.makeLogger()
        let tarball = path.hasSuffix(".tar.gz") || path.hasSuffix(".tgz")
        let collector = Collector(source: system.root, logger: logger)
        do {
            let summary: Collector.Summary
            if tarball {
                summary = try Tarball.create(path, runner: ProcessRunner()) { try collector.capture(into: $0) }
            } else {
                summary = try collector.capture(into: path.hasPrefix("/") ? path : Paths.currentDirectory() + "/" + path)
            }
            if output.json {
                print(try JSONOutput.encode(summary))
            } else {
                print("captured \(summary.disks) disks (\(summary.files) files, \(summary.links) links) into \(path)")
            }
        } catch {
            throw fail("\(error)")
        }
    }
}
