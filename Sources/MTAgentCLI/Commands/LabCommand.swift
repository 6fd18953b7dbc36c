import ArgumentParser
import MTAgentSetup

/// `mt-agent lab init`: a self-contained master-target identity in one directory, so tests,
/// benchmarks and the demo can run `serve` without `setup` changing the machine.
struct LabCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "lab",
        abstract: "Lab and test helpers that change nothing outside the directory they are given.",
        subcommands: [Init.self])

    struct Init: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Write a configuration, TLS identity and passphrase key under DIR.",
            discussion: """
                Prints the certificate fingerprint senders pin. Then: mt-agent serve --config DIR/mt-agent.conf
                The metrics endpoint is off unless --metrics-address names one.

                Example:
                  mt-agent lab init /srv/lab --passphrase-file /srv/lab.pass --retention /mnt/lab-retention --port 9443
                """)
        @Argument(help: "Directory to write into (created).") var directory: String
        @Option(name: .customLong("passphrase-file"), help: "The replication passphrase (mode 0600).") var passphraseFile: String
        @Option(help: "Mount point of the retention volume.") var retention: String
        @Option(help: "TCP port.") var port: Int = 9443
        @Option(name: .customLong("listen-address"), help: "Address to listen on.") var listenAddress: String = "127.0.0.1"
        @Option(name: .customLong("metrics-address"),
                help: ArgumentHelp("Prometheus endpoint, HOST:PORT, or off (the default here: labs and tests run several services).",
                                   valueName: "address"))
        var metricsAddress: String = "off"
        @Flag(name: .customLong("fast-kdf"), help: "Derive the key with scrypt N=2^14 instead of 2^17 (tests only).") var fastKDF = false

        func validate() throws {
            guard metricsAddress == "off" || HostPort(metricsAddress) != nil else {
                throw ValidationError("--metrics-address \(metricsAddress) is not HOST:PORT (e.g. 127.0.0.1:9464, [::1]:9464) or off")
            }
        }

        func run() throws {
            do {
                let passphrase = try PassphraseKey.readPassphraseFile(passphraseFile)
                print(try LabIdentity.write(directory: directory, passphrase: passphrase, retention: retention, port: port,
                                            listenAddress: listenAddress, metricsAddress: HostPort(metricsAddress),
                                            kdf: fastKDF ? KDFParameters(n: 1 << 14, r: 8, p: 1) : .standard))
            } catch {
                throw fail("\(error)")
            }
        }
    }
}
