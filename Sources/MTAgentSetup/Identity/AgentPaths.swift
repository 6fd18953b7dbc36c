/// Where setup puts mt-agent's own files, as absolute paths on the machine (under `--root`).
public enum AgentPaths {
    public static let configDirectory = "/etc/mt-agent"
    public static let config = "/etc/mt-agent/mt-agent.conf"
    public static let tlsDirectory = "/etc/mt-agent/tls"
    public static let tlsKey = "/etc/mt-agent/tls/key.pem"
    public static let tlsCertificate = "/etc/mt-agent/tls/cert.pem"
    public static let passphraseKey = "/etc/mt-agent/passphrase.key"

    /// The path on this host where `path` (absolute on the machine) lives under `root`.
    static func host(_ path: String, root: String) -> String {
        root == "/" || root.isEmpty ? path : (root.hasSuffix("/") ? String(root.dropLast()) : root) + path
    }
}
