// swift-tools-version: 6.0
import PackageDescription

let package = Package(
    name: "mt-agent",
    platforms: [.macOS(.v13)],
    products: [
        .executable(name: "mt-agent", targets: ["mt-agent"]),
    ],
    dependencies: [
        .package(url: "https://github.com/apple/swift-argument-parser", from: "1.8.2"),
        .package(url: "https://github.com/apple/swift-log", from: "1.16.2"),
        .package(url: "https://github.com/apple/swift-system", from: "1.8.1"),
        .package(url: "https://github.com/apple/swift-crypto", from: "3.12.3"),
        .package(url: "https://github.com/apple/swift-certificates", from: "1.21.1"),
        .package(url: "https://github.com/apple/swift-nio", from: "2.101.2"),
        .package(url: "https://github.com/apple/swift-nio-ssl", from: "2.37.6"),
        .package(url: "https://github.com/groue/GRDB.swift", from: "7.10.0"),
        .package(url: "https://github.com/swift-server/swift-service-lifecycle", from: "2.13.0"),
        .package(url: "https://github.com/apple/swift-configuration", from: "1.4.0"),
        .package(url: "https://github.com/apple/swift-metrics", from: "2.13.0"),
        .package(url: "https://github.com/swift-server/swift-prometheus", from: "2.4.1"),
    ],
    targets: [
        // Entry point only: everything it does lives in MTAgentCLI.
        .executableTarget(
            name: "mt-agent",
            dependencies: ["MTAgentCLI", "CMTShim"]
        ),
        // One file per subcommand: parse, call the core, render text or JSON.
        .target(
            name: "MTAgentCLI",
            dependencies: [
                "MTAgentCore",
                "MTAgentLinux",
                "MTAgentSetup",
                "MTAgentJournal",
                "MTAgentReplication",
                "MTAgentService",
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "Metrics", package: "swift-metrics"),
                .product(name: "Prometheus", package: "swift-prometheus"),
            ],
            plugins: ["BuildInfo"]
        ),
        // Records the git commit of the build for `mt-agent --version`.
        .plugin(name: "BuildInfo", capability: .buildTool()),
        // Sendable value types and rules; no I/O.
        .target(name: "MTAgentCore"),
        // The system: libudev, libblkid, sysfs/procfs readers, block-device ioctls.
        // It, MTAgentJournal (CMTShim's CRC-32C) and the entry point (one malloc arena) are the only
        // modules that import C.
        .target(
            name: "MTAgentLinux",
            dependencies: [
                "MTAgentCore",
                "CUdev",
                "CBlkid",
                "CMTShim",
                .product(name: "Logging", package: "swift-log"),
                .product(name: "SystemPackage", package: "swift-system"),
            ]
        ),
        // `mt-agent setup`: the steps that make a VM a master target, each with check/apply/revert,
        // their backups and state file, and the TLS identity and passphrase key they create.
        .target(
            name: "MTAgentSetup",
            dependencies: [
                "MTAgentCore",
                "MTAgentLinux",
                .product(name: "Logging", package: "swift-log"),
                .product(name: "Crypto", package: "swift-crypto"),
                .product(name: "_CryptoExtras", package: "swift-crypto"),
                .product(name: "X509", package: "swift-certificates"),
                .product(name: "Configuration", package: "swift-configuration"),
            ]
        ),
        // Where a write is made durable: the per-pair undo journal (segment files on the retention
        // volume), the recovery-point catalog (SQLite through GRDB) and the applier that orders
        // undo record -> target write -> commit record, each fdatasync'ed (docs/JOURNAL.md).
        .target(
            name: "MTAgentJournal",
            dependencies: [
                "MTAgentCore",
                "CMTShim",
                .product(name: "Logging", package: "swift-log"),
                .product(name: "Crypto", package: "swift-crypto"),
                .product(name: "GRDB", package: "GRDB.swift"),
            ]
        ),
        // `mt-agent serve` assembled: the store that checks target rules and feeds the journal,
        // the ServiceGroup with sd_notify, the watchdog, the RPO monitor and the metrics endpoint
        // (swift-metrics at the event sites; the executable bootstraps the Prometheus backend).
        .target(
            name: "MTAgentService",
            dependencies: [
                "MTAgentCore",
                "MTAgentLinux",
                "MTAgentJournal",
                "MTAgentReplication",
                .product(name: "Logging", package: "swift-log"),
                .product(name: "Metrics", package: "swift-metrics"),
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "NIOHTTP1", package: "swift-nio"),
                .product(name: "NIOConcurrencyHelpers", package: "swift-nio"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
                .product(name: "UnixSignals", package: "swift-service-lifecycle"),
            ]
        ),
        // The wire format (docs/PROTOCOL.md): frame codec, passphrase handshake, the server side
        // that feeds a ReplicaStore, and the reference sender.
        .target(
            name: "MTAgentReplication",
            dependencies: [
                "MTAgentCore",
                .product(name: "Logging", package: "swift-log"),
                .product(name: "Metrics", package: "swift-metrics"),
                .product(name: "Crypto", package: "swift-crypto"),
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "NIOSSL", package: "swift-nio-ssl"),
                .product(name: "NIOConcurrencyHelpers", package: "swift-nio"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
            ]
        ),
        // libFuzzer target for the frame codec (Scripts/fuzz builds it with -sanitize=fuzzer
        // -DFUZZING); a plain build makes a replayer: `mt-agent-frame-fuzzer FILE|DIR…`.
        .executableTarget(
            name: "mt-agent-frame-fuzzer",
            dependencies: [
                "MTAgentReplication",
                .product(name: "NIOCore", package: "swift-nio"),
            ]
        ),
        .systemLibrary(
            name: "CUdev",
            pkgConfig: "libudev",
            providers: [.apt(["libudev-dev"]), .yum(["systemd-devel"])]
        ),
        .systemLibrary(
            name: "CBlkid",
            pkgConfig: "blkid",
            providers: [.apt(["libblkid-dev"]), .yum(["libblkid-devel"])]
        ),
        // Macros Swift cannot import (ioctl request numbers) wrapped as functions, and CRC-32C
        // with the CPU's crc32 instruction (the journal's record checksum).
        .target(name: "CMTShim"),

        .testTarget(name: "MTAgentCoreTests", dependencies: ["MTAgentCore"]),
        // Fixture machines live in Tests/Fixtures, outside every target: they are sysfs captures
        // whose kernel symlinks form cycles that SwiftPM must never walk.
        .testTarget(name: "MTAgentLinuxTests", dependencies: ["MTAgentLinux", "MTAgentCore"]),
        .testTarget(name: "MTAgentSetupTests", dependencies: ["MTAgentSetup", "MTAgentLinux", "MTAgentCore"]),
        .testTarget(
            name: "MTAgentJournalTests",
            dependencies: [
                "MTAgentJournal", "MTAgentCore",
                .product(name: "Logging", package: "swift-log"),
                .product(name: "Crypto", package: "swift-crypto"),
            ]
        ),
        .testTarget(
            name: "MTAgentReplicationTests",
            dependencies: [
                "MTAgentReplication", "MTAgentCore", "MTAgentLinux",
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "NIOSSL", package: "swift-nio-ssl"),
                .product(name: "NIOConcurrencyHelpers", package: "swift-nio"),
                .product(name: "NIOEmbedded", package: "swift-nio"),
                .product(name: "NIOTestUtils", package: "swift-nio"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "Crypto", package: "swift-crypto"),
            ]
        ),
        .testTarget(
            name: "MTAgentServiceTests",
            dependencies: [
                "MTAgentService", "MTAgentJournal", "MTAgentCore",
                .product(name: "Logging", package: "swift-log"),
                .product(name: "Metrics", package: "swift-metrics"),
                .product(name: "Prometheus", package: "swift-prometheus"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
                .product(name: "NIOConcurrencyHelpers", package: "swift-nio"),
            ]
        ),
        .testTarget(
            name: "EndToEndTests",
            dependencies: [
                "MTAgentCore", "MTAgentJournal", "MTAgentReplication", "MTAgentSetup",
                .product(name: "Crypto", package: "swift-crypto"),
                // Hostile peers over real TLS (HostileFloodTests).
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "NIOSSL", package: "swift-nio-ssl"),
            ]
        ),
    ],
    swiftLanguageModes: [.v6]
)
