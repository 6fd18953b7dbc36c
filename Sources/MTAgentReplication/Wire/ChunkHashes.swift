import Crypto

/// SHA-256 of each `chunkSize` piece of a buffer (the last may be short), 32 bytes each,
/// concatenated: what HASHES carries (docs/PROTOCOL.md §4) and what the sender compares it with.
public enum ChunkHashes {
    public static func of(_ bytes: UnsafeRawBufferPointer, chunkSize: Int) -> [UInt8] {
        let count = (bytes.count + chunkSize - 1) / chunkSize
        return [UInt8](unsafeUninitializedCapacity: count * 32) { out, initialized in
            var at = 0
            var o = 0
            while at < bytes.count {
                let end = min(at + chunkSize, bytes.count)
                SHA256.hash(data: UnsafeRawBufferPointer(rebasing: bytes[at..<end])).withUnsafeBytes { digest in
                    for i in 0..<32 { out[o + i] = digest[i] }
                }
                o += 32
                at = end
            }
            initialized = count * 32
        }
    }
}
