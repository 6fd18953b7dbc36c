/// Creates the service's TLS key and self-signed certificate and prints the fingerprint senders
/// pin. An identity that exists is kept (its fingerprint is already pinned); a broken one stops
/// setup rather than being replaced behind the admin's back.
public struct TLSIdentityStep: SetupStep {
    public let id = "tls"
    public let title = "Create the TLS key and self-signed certificate under \(AgentPaths.tlsDirectory)"

    public init() {}

    public func check(_ context: SetupContext) throws -> StepState {
        let files = context.files
        // A certificate without its key, or a key without a certificate (a run killed between the
        // two writes), was never printed or pinned: make a new pair.
        guard files.exists(AgentPaths.tlsCertificate), files.exists(AgentPaths.tlsKey) else {
            return .needed("create a P-256 key and a self-signed certificate for \(HostIdentity.hostname(context.system))")
        }
        do {
            _ = try identity(context)
        } catch {
            return .blocked("\(error)")
        }
        if let mode = ModeBits.of(hostPath: AgentPaths.host(AgentPaths.tlsKey, root: context.root)), mode != 0o600 {
            return .needed("set \(AgentPaths.tlsKey) to mode 0600 (it is \(ModeBits.octal(mode)))")
        }
        return .done
    }

    public func apply(_ context: SetupContext) throws -> StepOutcome {
        let files = context.files
        if files.exists(AgentPaths.tlsCertificate), files.exists(AgentPaths.tlsKey) {
            // Only the key's mode was wrong: keep the identity, and so the pinned fingerprint.
            let existing = try identity(context)
            try files.write(AgentPaths.tlsKey, Array(existing.privateKeyPEM.utf8), mode: 0o600)
            return StepOutcome(
                summary: "set \(AgentPaths.tlsKey) to mode 0600",
                notes: ["TLS certificate SHA-256 fingerprint: \(existing.fingerprint)"]
            )
        }
        let hostname = HostIdentity.hostname(context.system)
        let addresses = HostIdentity.addresses(context.system)
        let identity = try TLSIdentity.generate(hostname: hostname, addresses: addresses)
        // Key first: a run killed before the certificate is written leaves no certificate, and
        // check makes a fresh pair.
        try files.write(AgentPaths.tlsKey, Array(identity.privateKeyPEM.utf8), mode: 0o600)
        try files.write(AgentPaths.tlsCertificate, Array(identity.certificatePEM.utf8), mode: 0o644)
        context.logger.info("created TLS identity", metadata: [
            "tls.fingerprint": "\(identity.fingerprint)", "tls.hostname": "\(hostname)",
        ])
        return StepOutcome(
            summary: "created \(AgentPaths.tlsKey) and \(AgentPaths.tlsCertificate) (CN \(hostname), valid 10 years)",
            notes: ["TLS certificate SHA-256 fingerprint: \(identity.fingerprint)"]
        )
    }

    private func identity(_ context: SetupContext) throws -> TLSIdentity {
        guard let cert = context.files.read(AgentPaths.tlsCertificate) else { throw TLSIdentityError.missing(AgentPaths.tlsCertificate) }
        guard let key = context.files.read(AgentPaths.tlsKey) else { throw TLSIdentityError.missing(AgentPaths.tlsKey) }
        return try TLSIdentity.parse(
            certificatePEM: String(decoding: cert, as: UTF8.self), privateKeyPEM: String(decoding: key, as: UTF8.self)
        )
    }
}
