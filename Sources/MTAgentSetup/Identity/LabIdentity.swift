import MTAgentLinux

/// A master-target identity in one directory — configuration, TLS identity, passphrase key — for
/// labs, tests, benchmarks and the demo, where `setup` must not change the machine.
public enum LabIdentity {
    /// Writes `DIR/mt-agent.conf`, `cert.pem`, `key.pem` (0600) and `passphrase.key` (0600) and
    /// returns the certificate fingerprint. The metrics endpoint is off unless `metricsAddress` is
    /// given: a lab often runs several services on one machine.
    public static func write(directory: String, passphrase: [UInt8], retention: String, port: Int, listenAddress: String,
                             metricsAddress: HostPort? = nil, kdf: KDFParameters = .standard) throws -> String {
        // The configuration names files by absolute path, as `serve` requires.
        let directory = directory.hasPrefix("/") ? directory : Paths.currentDirectory() + "/" + directory
        try HostFile.makeDirectories(directory, mode: 0o700)
        let key = try PassphraseKey.create(passphrase: passphrase, params: kdf)
        let identity = try TLSIdentity.generate(hostname: "localhost", addresses: [listenAddress])
        var config = AgentConfig(retentionPath: retention)
        config.port = port
        config.listenAddress = listenAddress
        config.metricsAddress = metricsAddress
        config.tlsCertificate = directory + "/cert.pem"
        config.tlsKey = directory + "/key.pem"
        config.passphraseKey = directory + "/passphrase.key"
        try HostFile.write(config.tlsCertificate, Array(identity.certificatePEM.utf8), mode: 0o644)
        try HostFile.write(config.tlsKey, Array(identity.privateKeyPEM.utf8), mode: 0o600)
        try HostFile.write(config.passphraseKey, Array(key.render().utf8), mode: 0o600)
        try HostFile.write(directory + "/mt-agent.conf", Array(config.render().utf8), mode: 0o644)
        return identity.fingerprint
    }
}
