import Foundation
import Glibc
import MTAgentCore
import Testing
@testable import MTAgentJournal

/// Paths under the retention volume (docs/JOURNAL.md "Layout"): made and deleted one component at a
/// time from `<retention>/mt-agent`, never through a symlink, never outside it.
@Suite struct RetentionLayoutTests {
    /// A retention directory and, next to it, an outside directory with a file that must survive.
    final class Scene {
        let fixture: Fixture
        let layout: RetentionLayout
        let outside: String
        let canary: String

        init() throws {
            fixture = try Fixture()
            layout = RetentionLayout(retention: fixture.directory + "/retention")
            outside = fixture.directory + "/outside"
            canary = outside + "/canary"
            try FileManager.default.createDirectory(atPath: outside, withIntermediateDirectories: true)
            try writeFile(canary, Array("unrelated".utf8))
        }

        var canaryIntact: Bool { (try? readFile(canary)) == Array("unrelated".utf8) }
        func symlink(_ target: String, at path: String) throws {
            try FileManager.default.createSymbolicLink(atPath: path, withDestinationPath: target)
        }
    }

    static let p: Identifier = "p1"

    @Test func removeJournalDeletesTheTreeButNeverFollowsALinkOut() throws {
        let s = try Scene()
        let journal = try s.layout.makeJournal(Self.p)
        try writeFile(journal + "/seg-00000001.mtj", [UInt8](repeating: 1, count: 1000))
        try FileManager.default.createDirectory(atPath: journal + "/sub/deeper", withIntermediateDirectories: true)
        try writeFile(journal + "/sub/deeper/f", [UInt8](repeating: 2, count: 24))
        try s.symlink(s.outside, at: journal + "/link-to-dir")
        try s.symlink(s.canary, at: journal + "/sub/link-to-file")

        #expect(try s.layout.removeJournal(Self.p) == 1024)
        #expect(!FileManager.default.fileExists(atPath: journal))
        #expect(s.canaryIntact)
        #expect(try s.layout.removeJournal(Self.p) == 0)  // again: nothing there
    }

    @Test func aPairDirectoryReplacedByALinkIsRefusedForWritesAndUnlinkedOnDelete() throws {
        let s = try Scene()
        try FileManager.default.createDirectory(atPath: s.layout.journalRoot, withIntermediateDirectories: true)
        try s.symlink(s.outside, at: s.layout.journal(Self.p))

        #expect(throws: RetentionPathError.notADirectory(path: s.layout.journal(Self.p))) { try s.layout.makeJournal(Self.p) }

        // The applier does not write segments through it either.
        var rng = SplitMix(seed: 5)
        let target = try s.fixture.makeTarget("t", size: 65536, rng: &rng)
        let pair = try s.fixture.catalog.registerPair(id: "p1", group: "g", target: target, sourceSize: 65536)
        #expect(throws: RetentionPathError.notADirectory(path: s.layout.journal(Self.p))) {
            try PairApplier.open(pair: pair, targetPath: target, admitted: nil, journalRoot: s.layout.journalRoot,
                                 catalog: s.fixture.catalog, logger: quietLogger)
        }
        #expect(try FileManager.default.contentsOfDirectory(atPath: s.outside) == ["canary"])

        // Delete removes the link, not what it points at.
        #expect(try s.layout.removeJournal(Self.p) == 0)
        #expect((try? FileManager.default.destinationOfSymbolicLink(atPath: s.layout.journal(Self.p))) == nil)
        #expect(s.canaryIntact)
    }

    @Test func aJournalRootReplacedByALinkIsRefused() throws {
        let s = try Scene()
        try FileManager.default.createDirectory(atPath: s.layout.base, withIntermediateDirectories: true)
        try FileManager.default.createDirectory(atPath: s.outside + "/p1", withIntermediateDirectories: true)
        try writeFile(s.outside + "/p1/seg-00000001.mtj", [1, 2, 3])
        try s.symlink(s.outside, at: s.layout.journalRoot)

        #expect(throws: RetentionPathError.notADirectory(path: s.layout.journalRoot)) { try s.layout.makeJournal(Self.p) }
        #expect(throws: RetentionPathError.notADirectory(path: s.layout.journalRoot)) { try s.layout.removeJournal(Self.p) }
        #expect(throws: RetentionPathError.notADirectory(path: s.layout.journalRoot)) {
            try JournalPruning.removeSegments(layout: s.layout, pair: Self.p, before: 5)
        }
        #expect(FileManager.default.fileExists(atPath: s.outside + "/p1/seg-00000001.mtj"))
        #expect(s.canaryIntact)
    }

    @Test func aSavedStoreIsMadeAndRemovedUnderFailover() throws {
        let s = try Scene()
        let saved = try s.layout.makeSaved(Self.p)
        #expect(saved == s.layout.base + "/failover/p1")
        try writeFile(saved + "/seg-00000001.mtj", [UInt8](repeating: 0, count: 10))
        #expect(try s.layout.removeSaved(Self.p) == 10)
        #expect(!FileManager.default.fileExists(atPath: saved))
    }

    @Test(arguments: ["../escape", "..", ".", "a/b", ""])
    func theApplierRefusesABadPairIDBeforeMakingAnything(_ id: String) throws {
        let s = try Scene()
        var rng = SplitMix(seed: 6)
        let target = try s.fixture.makeTarget("t", size: 65536, rng: &rng)
        let forged = PairInfo(id: id, group: "g", target: target, sourceSize: 65536)
        #expect(throws: IdentifierError(kind: .pair, value: id)) {
            try PairApplier.open(pair: forged, targetPath: target, admitted: nil, journalRoot: s.layout.journalRoot,
                                 catalog: s.fixture.catalog, logger: quietLogger)
        }
        #expect(!FileManager.default.fileExists(atPath: s.layout.journalRoot))
        #expect(!FileManager.default.fileExists(atPath: s.layout.retention + "/escape"))
    }

    @Test(arguments: ["..", "../../canary", "a/b", ""])
    func theCatalogRefusesToRegisterABadID(_ id: String) throws {
        let fixture = try Fixture()
        #expect(throws: IdentifierError(kind: .pair, value: id)) {
            try fixture.catalog.registerPair(id: id, group: "g", target: "/dev/null", sourceSize: 1)
        }
        #expect(throws: IdentifierError(kind: .group, value: id)) {
            try fixture.catalog.registerPair(id: "p", group: id, target: "/dev/null", sourceSize: 1)
        }
        #expect(try fixture.catalog.pairs().isEmpty)
    }
}

/// Targets are opened without following a link and checked on the descriptor against the node the
/// target rules judged.
@Suite struct TargetOpenTests {
    static func node(_ path: String) -> AdmittedTarget.Node {
        var st = stat()
        stat(path, &st)
        return .regularFile(device: UInt64(st.st_dev), inode: UInt64(st.st_ino))
    }

    @Test func aSymlinkIsNotFollowed() throws {
        let fixture = try Fixture()
        var rng = SplitMix(seed: 7)
        let target = try fixture.makeTarget("t", size: 4096, rng: &rng)
        let link = fixture.directory + "/link"
        try FileManager.default.createSymbolicLink(atPath: link, withDestinationPath: target)
        #expect(throws: TargetOpenError.symlink(path: link)) { try PosixFile.openTarget(link, flags: O_RDWR, admitted: nil) }
    }

    @Test func aTargetSwappedAfterTheCheckIsRefused() throws {
        let fixture = try Fixture()
        var rng = SplitMix(seed: 8)
        let target = try fixture.makeTarget("t", size: 65536, rng: &rng)
        let admitted = Self.node(target)
        // Between the check and the open, another file takes the checked path.
        let other = try fixture.makeTarget("other", size: 65536, rng: &rng)
        let before = try readFile(other)
        #expect(rename(other, target) == 0)
        let found = Self.node(target)
        #expect(throws: TargetOpenError.changed(path: target, admitted: admitted, found: found)) {
            try PosixFile.openTarget(target, flags: O_RDWR, admitted: admitted)
        }
        let pair = try fixture.catalog.registerPair(id: "p", group: "g", target: target, sourceSize: 65536)
        #expect(throws: TargetOpenError.changed(path: target, admitted: admitted, found: found)) {
            try PairApplier.open(pair: pair, targetPath: target, admitted: admitted, journalRoot: fixture.journalRoot,
                                 catalog: fixture.catalog, logger: quietLogger)
        }
        #expect(try readFile(target) == before)
        // The node that is there now opens.
        _ = try PosixFile.openTarget(target, flags: O_RDWR, admitted: found)
    }

    @Test func neitherABlockDeviceNorAFileIsRefused() throws {
        #expect(throws: TargetOpenError.notATarget(path: "/dev/null")) { try PosixFile.openTarget("/dev/null", flags: O_RDWR, admitted: nil) }
    }
}
