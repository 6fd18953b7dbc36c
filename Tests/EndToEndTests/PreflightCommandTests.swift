import Foundation
import Testing

@Suite("mt-agent preflight", .tags(.large))
struct PreflightCommandTests {
    static let ids: Set<String> = [
        "enable-uuid", "unique-identity", "scsi-controller", "disk-count", "vmware-tools", "hosts", "time-sync",
        "root-lvm", "os", "packages", "setup", "config", "tls", "passphrase", "service",
    ]

    @Test func aBareCapturedMachineFailsWithEveryCheckReported() throws {
        let r = try mtAgent(["preflight", "--json", "--root", fixture("vmware-pvscsi")])
        #expect(r.status == 1, "\(r.stderr)")
        let checks = try #require(try r.json["checks"] as? [[String: Any]])
        let byID = Dictionary(checks.map { ($0["id"] as? String ?? "?", $0) }, uniquingKeysWith: { a, _ in a })
        #expect(Set(byID.keys).isSuperset(of: Self.ids), "missing: \(Self.ids.subtracting(byID.keys))")
        #expect(byID["enable-uuid"]?["status"] as? String == "fail")
        #expect(byID["scsi-controller"]?["status"] as? String == "warn")  // PVSCSI
        #expect(byID["time-sync"]?["status"] as? String == "skip")  // a capture has no clock
        #expect(byID["tls"]?["status"] as? String == "fail")
        #expect(byID["service"]?["status"] as? String == "fail")
        for check in checks where check["status"] as? String == "fail" {
            #expect(!(check["fix"] is NSNull), "\(check["id"] ?? "?") fails without a fix")
        }
    }

    @Test func theTableEndsWithAVerdict() throws {
        let r = try mtAgent(["preflight", "--root", fixture("vmware-lsi-sas")])
        #expect(r.status == 1)
        #expect(r.stdout.contains("PASS  scsi-controller: SCSI controllers: mptsas"))
        #expect(r.stdout.split(separator: "\n").last?.hasPrefix("preflight: ") == true)
        #expect(try mtAgent(["preflight", "--root", "/nonexistent-root"]).status == 2)
    }
}

extension PreflightCommandTests {
    /// After setup, the setup-owned checks pass once the machine has rebooted (a new boot id).
    @Test func setupThenRebootMakesTheSetupChecksPass() throws {
        let dir = try temporaryDirectory()
        defer { try? FileManager.default.removeItem(at: dir) }
        let root = dir.appendingPathComponent("root").path
        let cp = Process()
        cp.executableURL = URL(fileURLWithPath: "/bin/cp")
        cp.arguments = ["-a", fixture("setup/debian12"), root]
        try cp.run()
        cp.waitUntilExit()
        let bootID = root + "/proc/sys/kernel/random/boot_id"
        try FileManager.default.createDirectory(atPath: root + "/proc/sys/kernel/random", withIntermediateDirectories: true)
        try "1b7c4a52-0000-4000-8000-000000000001\n".write(toFile: bootID, atomically: true, encoding: .utf8)
        let passphrase = dir.appendingPathComponent("passphrase").path
        FileManager.default.createFile(atPath: passphrase, contents: Data("pass\n".utf8), attributes: [.posixPermissions: 0o600])

        func statuses() throws -> [String: String] {
            let r = try mtAgent(["preflight", "--json", "--root", root])
            let checks = try #require(try r.json["checks"] as? [[String: Any]])
            return Dictionary(checks.map { ($0["id"] as? String ?? "?", $0["status"] as? String ?? "?") }, uniquingKeysWith: { a, _ in a })
        }
        #expect(try statuses()["setup"] == "fail")
        let setup = try mtAgent(["setup", "--root", root, "--yes", "--passphrase-file", passphrase])
        #expect(setup.status == 0, "\(setup.stderr)")

        let beforeReboot = try statuses()
        #expect(beforeReboot["setup"] == "fail")  // reboot pending
        #expect(beforeReboot["tls"] == "pass" && beforeReboot["passphrase"] == "pass" && beforeReboot["config"] == "pass")
        #expect(beforeReboot["packages"] == "pass" && beforeReboot["os"] == "pass")

        try "1b7c4a52-0000-4000-8000-000000000002\n".write(toFile: bootID, atomically: true, encoding: .utf8)
        #expect(try statuses()["setup"] == "pass")
    }
}
