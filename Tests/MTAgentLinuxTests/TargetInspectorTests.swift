import Foundation
import Glibc
import Logging
import MTAgentCore
import Testing

@testable import MTAgentLinux

/// A target path is resolved before the rules see it, so the rules judge the node that will be
/// opened; block devices are matched by device number.
@Suite("target inspection", .tags(.medium))
struct TargetInspectorTests {
    static let inspector = TargetInspector.forRoot("/", logger: Logger(label: "test"))

    static func status(_ path: String) -> stat {
        var st = stat()
        _ = stat(path, &st)
        return st
    }

    @Test func aSymlinkToALoopDeviceIsJudgedAsTheDeviceItNames() throws {
        let s = try Scratch()
        defer { s.cleanup() }
        let loop = try s.loopDevice(sizeMiB: 16, name: "target")
        s.settle()
        let link = s.path("by-name")
        try FileManager.default.createSymbolicLink(atPath: link, withDestinationPath: loop)

        let found = try Self.inspector.inspect(identity: link, retentionPath: nil)
        guard case .disk(let disk) = found.device else { Issue.record("\(link) → \(found.device)"); return }
        #expect(disk.devnode == loop)
        #expect(found.admitted == AdmittedTarget(path: loop, node: .blockDevice(rdev: UInt64(Self.status(loop).st_rdev))))
    }

    @Test func aFileIsResolvedAndKnownOnTheRetentionFilesystem() throws {
        let s = try Scratch()
        defer { s.cleanup() }
        let retention = s.path("retention")
        try FileManager.default.createDirectory(atPath: retention, withIntermediateDirectories: true)
        let image = s.path("elsewhere.img")
        try Data(count: 8192).write(to: URL(fileURLWithPath: image))
        let link = s.path("link.img")
        try FileManager.default.createSymbolicLink(atPath: link, withDestinationPath: image)
        // The retention directory named through a link too.
        let retentionLink = s.path("retention-link")
        try FileManager.default.createSymbolicLink(atPath: retentionLink, withDestinationPath: retention)

        let found = try Self.inspector.inspect(identity: link, retentionPath: retentionLink)
        #expect(found.device == .file(path: image, size: 8192))
        let st = Self.status(image)
        #expect(found.admitted == AdmittedTarget(path: image, node: .regularFile(device: UInt64(st.st_dev), inode: UInt64(st.st_ino))))
        #expect(found.retentionPath == retention)
        #expect(found.fileOnRetentionFilesystem)  // the scratch directory is one filesystem
        // A file the rules then refuse: no lab setting.
        var facts = TargetFacts(identity: link, device: found.device, assignedGroup: "g", retentionPath: found.retentionPath)
        facts.fileOnRetentionFilesystem = found.fileOnRetentionFilesystem
        #expect(TargetRules.refusals(facts).map(\.id) == ["target.kind", "target.retention"])
    }

    @Test func neitherABlockDeviceNorAFileIsMissing() throws {
        let found = try Self.inspector.inspect(identity: "/dev/null", retentionPath: nil)
        #expect(found.device == .missing && found.admitted == nil)
        let gone = try Self.inspector.inspect(identity: "/nonexistent/disk", retentionPath: nil)
        #expect(gone.device == .missing && gone.admitted == nil)
    }
}
