/// Reading a config file setup merges into.
enum ConfigText {
    /// The file's text; nil when it does not exist. A file that exists but cannot be read (or is
    /// not a file) is an error: setup never overwrites what it could not read.
    static func read(_ path: String, _ files: SetupFileSystem) throws(SetupError) -> String? {
        guard files.exists(path) else { return nil }
        guard let bytes = files.read(path) else { throw .unreadable(path: path) }
        return String(decoding: bytes, as: UTF8.self)
    }
}

extension SetupFileSystem {
    /// The modification time of a file of the machine (seconds, nanoseconds); nil when missing.
    public func modificationTime(of path: String) -> (seconds: Int, nanoseconds: Int)? {
        HostFile.info(root == "/" ? path : root + path).map { ($0.mtime.tv_sec, $0.mtime.tv_nsec) }
    }
}
