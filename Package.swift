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
    ],
    targets: [
        // Entry point only: everything it does lives in MTAgentCLI.
        .executableTarget(
            name: "mt-agent",
            dependencies: ["MTAgentCLI"]
        ),
        // One file per subcommand: parse, call the core, render text or JSON.
        .target(
            name: "MTAgentCLI",
            dependencies: [
                "MTAgentCore",
                "MTAgentLinux",
                "MTAgentSetup",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
                .product(name: "Logging", package: "swift-log"),
            ]
        ),
        // Sendable value types and rules; no I/O.
        .target(name: "MTAgentCore"),
        // The system: libudev, libblkid, sysfs/procfs readers, block-device ioctls.
        // The only module that imports C.
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
        // Macros Swift cannot import (ioctl request numbers) wrapped as functions.
        .target(name: "CMTShim"),

        .testTarget(name: "MTAgentCoreTests", dependencies: ["MTAgentCore"]),
        // Fixture machines live in Tests/Fixtures, outside every target: they are sysfs captures
        // whose kernel symlinks form cycles that SwiftPM must never walk.
        .testTarget(name: "MTAgentLinuxTests", dependencies: ["MTAgentLinux", "MTAgentCore"]),
        .testTarget(name: "MTAgentSetupTests", dependencies: ["MTAgentSetup", "MTAgentLinux", "MTAgentCore"]),
        .testTarget(
            name: "EndToEndTests",
            dependencies: ["MTAgentCore"]
        ),
    ],
    swiftLanguageModes: [.v6]
)
