/// Stores the key derived from the replication passphrase (`--passphrase-file`, never the
/// command line) in `/etc/mt-agent/passphrase.key`, mode 0600. Run again with a different
/// passphrase file, it replaces the key; with the same one, it does nothing.
public struct PassphraseStep: SetupStep {
    public let id = "passphrase"
    public let title = "Store the key derived from the replication passphrase in \(AgentPaths.passphraseKey)"
    /// The KDF cost; tests lower it, setup always uses `.standard`.
    public let parameters: KDFParameters

    public init(parameters: KDFParameters = .standard) {
        self.parameters = parameters
    }

    public func check(_ context: SetupContext) throws -> StepState {
        let stored = storedKey(context)
        guard let file = context.options.passphraseFile else {
            switch stored {
            case .none:
                return .blocked("no passphrase key yet: pass --passphrase-file FILE (a file of mode 0600 holding the replication passphrase)")
            case .broken(let error):
                return .blocked("\(error)")
            case .valid(_, let mode) where mode != 0o600:
                return .needed("set \(AgentPaths.passphraseKey) to mode 0600 (it is \(ModeBits.octal(mode)))")
            case .valid:
                return .done
            }
        }
        let passphrase: [UInt8]
        do {
            passphrase = try PassphraseKey.readPassphraseFile(file)
        } catch {
            return .blocked("\(error)")
        }
        guard case .valid(let key, let mode) = stored else {
            return .needed("derive a key from \(file) with scrypt and store it in \(AgentPaths.passphraseKey)")
        }
        guard try key.matches(passphrase: passphrase) else {
            return .needed("replace \(AgentPaths.passphraseKey): \(file) holds a different passphrase")
        }
        if mode != 0o600 {
            return .needed("set \(AgentPaths.passphraseKey) to mode 0600 (it is \(ModeBits.octal(mode)))")
        }
        return .done
    }

    public func apply(_ context: SetupContext) throws -> StepOutcome {
        let stored = storedKey(context)
        guard let file = context.options.passphraseFile else {
            // Only a mode to fix: rewrite the same key.
            guard case .valid(let key, _) = stored else { throw PassphraseError.keyMissing(AgentPaths.passphraseKey) }
            try context.files.write(AgentPaths.passphraseKey, Array(key.render().utf8), mode: 0o600)
            return StepOutcome(summary: "set \(AgentPaths.passphraseKey) to mode 0600")
        }
        let passphrase = try PassphraseKey.readPassphraseFile(file)
        if case .valid(let key, _) = stored, try key.matches(passphrase: passphrase) {
            try context.files.write(AgentPaths.passphraseKey, Array(key.render().utf8), mode: 0o600)
            return StepOutcome(summary: "set \(AgentPaths.passphraseKey) to mode 0600")
        }
        let key = try PassphraseKey.create(passphrase: passphrase, params: parameters)
        try context.files.write(AgentPaths.passphraseKey, Array(key.render().utf8), mode: 0o600)
        context.logger.info("stored passphrase key", metadata: ["file": "\(AgentPaths.passphraseKey)", "kdf": "scrypt"])
        var notes: [String] = []
        if passphrase.count < 12 {
            notes.append("the passphrase is \(passphrase.count) characters long; 12 or more is recommended")
        }
        let p = key.parameters
        return StepOutcome(
            summary: "stored the \(p.algorithm)-derived key (N=\(p.n), r=\(p.r), p=\(p.p)) in \(AgentPaths.passphraseKey), mode 0600",
            notes: notes
        )
    }

    private enum Stored {
        case none
        case broken(Error)
        case valid(PassphraseKey, mode: UInt32)
    }

    private func storedKey(_ context: SetupContext) -> Stored {
        guard let bytes = context.files.read(AgentPaths.passphraseKey) else { return .none }
        do {
            let key = try PassphraseKey.parse(String(decoding: bytes, as: UTF8.self))
            let mode = ModeBits.of(hostPath: AgentPaths.host(AgentPaths.passphraseKey, root: context.root)) ?? 0o600
            return .valid(key, mode: mode)
        } catch {
            return .broken(error)
        }
    }
}
