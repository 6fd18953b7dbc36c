import Glibc

/// Permission bits of the files setup keeps secret.
enum ModeBits {
    /// The permission bits (`0o600`) of a host path, without following a final symlink; nil when
    /// it does not exist.
    static func of(hostPath: String) -> UInt32? {
        var st = stat()
        guard lstat(hostPath, &st) == 0 else { return nil }
        return UInt32(st.st_mode) & 0o7777
    }

    /// `0644`-style text of a permission mode.
    static func octal(_ mode: UInt32) -> String {
        let s = String(mode & 0o7777, radix: 8)
        return String(repeating: "0", count: max(0, 4 - s.count)) + s
    }
}
