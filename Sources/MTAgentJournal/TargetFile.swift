import Glibc
import MTAgentCore

/// Why a target could not be opened as the node the target rules admitted.
public enum TargetOpenError: Error, Equatable, CustomStringConvertible {
    /// The path is a symlink now (it was resolved before the rules ran): something swapped it.
    case symlink(path: String)
    /// Neither a block device nor a regular file.
    case notATarget(path: String)
    /// The open descriptor is another node than the one the rules judged.
    case changed(path: String, admitted: AdmittedTarget.Node, found: AdmittedTarget.Node)

    public var description: String {
        switch self {
        case .symlink(let path):
            return "target \(path) became a symlink after it was checked; refusing to write through it — check who changes /dev, then reopen the pair"
        case .notATarget(let path):
            return "target \(path) is neither a block device nor a regular file; refusing to write to it"
        case .changed(let path, let admitted, let found):
            return "target \(path) is now a \(found), not the \(admitted) the target rules admitted; refusing to write to it — "
                + "the device was replaced or renamed after the check: run 'mt-agent check target' and reopen the pair"
        }
    }
}

extension PosixFile {
    /// Opens a target without following a link, then checks on the descriptor that it is a block
    /// device or regular file and, when `admitted` is given, the very node the rules judged.
    static func openTarget(_ path: String, flags: Int32, admitted: AdmittedTarget.Node?) throws -> PosixFile {
        let file: PosixFile
        do {
            file = try PosixFile(path: path, flags: flags | O_NOFOLLOW)
        } catch JournalError.io(_, _, ELOOP) {
            throw TargetOpenError.symlink(path: path)
        }
        let found = try file.node()
        if let admitted, admitted != found { throw TargetOpenError.changed(path: path, admitted: admitted, found: found) }
        return file
    }

    /// What this descriptor is, as `AdmittedTarget.Node`.
    func node() throws -> AdmittedTarget.Node {
        var st = stat()
        guard fstat(fd, &st) == 0 else { throw JournalError.io(operation: "fstat", path: path, errno: errno) }
        switch st.st_mode & S_IFMT {
        case S_IFBLK: return .blockDevice(rdev: UInt64(st.st_rdev))
        case S_IFREG: return .regularFile(device: UInt64(st.st_dev), inode: UInt64(st.st_ino))
        default: throw TargetOpenError.notATarget(path: path)
        }
    }
}
