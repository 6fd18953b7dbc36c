import Foundation
import Testing

extension Tag {
    @Tag static var large: Self
}

/// The built `mt-agent`, next to this test bundle in the build directory (`MT_AGENT_BINARY`
/// names another one, e.g. an older build to show that a new test fails against it).
let binary: String = {
    if let path = ProcessInfo.processInfo.environment["MT_AGENT_BINARY"], !path.isEmpty { return path }
    let exe = (try? FileManager.default.destinationOfSymbolicLink(atPath: "/proc/self/exe")) ?? ""
    var dir = URL(fileURLWithPath: exe).deletingLastPathComponent()
    // The test runner may be inside a bundle directory (….xctest/…).
    for _ in 0..<3 {
        let candidate = dir.appendingPathComponent("mt-agent").path
        if FileManager.default.isExecutableFile(atPath: candidate) { return candidate }
        dir.deleteLastPathComponent()
    }
    return "mt-agent-binary-not-built"
}()

let packageRoot = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()

func fixture(_ name: String) -> String {
    packageRoot.appendingPathComponent("Tests/Fixtures/\(name)").path
}

struct Run {
    var status: Int32
    var stdout: String
    var stderr: String

    var json: [String: Any] {
        get throws {
            let object = try JSONSerialization.jsonObject(with: Data(stdout.utf8))
            return try #require(object as? [String: Any])
        }
    }
}

/// Runs the binary as a user would: arguments, exit status, stdout, stderr. With `user`, it
/// runs under that uid/gid through setpriv.
func mtAgent(_ arguments: [String], binary path: String = binary, as user: UInt32? = nil) throws -> Run {
    #expect(FileManager.default.isExecutableFile(atPath: path), "build mt-agent first (swift build)")
    let process = Process()
    if let user {
        process.executableURL = URL(fileURLWithPath: "/usr/bin/setpriv")
        process.arguments = ["--reuid=\(user)", "--regid=\(user)", "--clear-groups", path] + arguments
    } else {
        process.executableURL = URL(fileURLWithPath: path)
        process.arguments = arguments
    }
    // stderr goes to a file so that reading stdout to its end can never deadlock on a full pipe.
    let errFile = FileManager.default.temporaryDirectory.appendingPathComponent("mt-agent-e2e-\(UUID().uuidString).err")
    FileManager.default.createFile(atPath: errFile.path, contents: nil)
    defer { try? FileManager.default.removeItem(at: errFile) }
    let errHandle = try FileHandle(forWritingTo: errFile)
    let out = Pipe()
    process.standardOutput = out
    process.standardError = errHandle
    process.standardInput = FileHandle.nullDevice
    try process.run()
    let stdout = out.fileHandleForReading.readDataToEndOfFile()
    process.waitUntilExit()
    try errHandle.close()
    return Run(
        status: process.terminationStatus, stdout: String(decoding: stdout, as: UTF8.self),
        stderr: String(decoding: try Data(contentsOf: errFile), as: UTF8.self))
}

/// A private temporary directory, removed by the caller's `defer`.
func temporaryDirectory() throws -> URL {
    let url = FileManager.default.temporaryDirectory.appendingPathComponent("mt-agent-e2e-\(UUID().uuidString)")
    try FileManager.default.createDirectory(at: url, withIntermediateDirectories: true)
    return url
}
