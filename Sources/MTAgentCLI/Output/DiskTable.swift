import MTAgentCore

/// `mt-agent disks` as a person reads it: one line per disk, its partitions indented below.
enum DiskTable {
    static func render(_ inventory: Inventory) -> String {
        var table = Table(header: ["NAME", "HCTL", "DRIVER", "VENDOR/MODEL", "SIZE", "WWID", "SERIAL", "FS", "MOUNT", "ROLE"])
        for disk in inventory.disks {
            let model = [disk.vendor, disk.model].compactMap { $0 }.joined(separator: " ")
            table.rows.append([
                disk.name, disk.hctl ?? "-", disk.driver ?? "-", model.isEmpty ? "-" : model,
                humanSize(disk.sizeBytes), disk.wwid ?? "-", disk.serial ?? "-",
                fs(disk.fsType ?? disk.partitionTable?.type, swap: disk.swap),
                where_(disk.mountpoints, holders: disk.holders), disk.role.rawValue,
            ])
            for (i, part) in disk.partitions.enumerated() {
                let branch = i == disk.partitions.count - 1 ? "└─" : "├─"
                table.rows.append([
                    branch + part.name, "", "", part.label.map { "label=\($0)" } ?? "", humanSize(part.sizeBytes),
                    "", "", fs(part.fsType, swap: part.swap), where_(part.mountpoints, holders: part.holders), "",
                ])
            }
        }
        let host = inventory.host
        let summary = "\(inventory.disks.count) disks; hypervisor \(host.hypervisor ?? "none detected")"
            + (host.root == "/" ? "" : "; read from \(host.root)")
        return table.render() + summary + "\n"
    }

    private static func fs(_ type: String?, swap: Bool) -> String {
        swap ? "swap" : type ?? "-"
    }

    private static func where_(_ mounts: [String], holders: [String]) -> String {
        if !mounts.isEmpty { return mounts.joined(separator: ",") }
        if !holders.isEmpty { return "held by " + holders.joined(separator: ",") }
        return "-"
    }
}

/// Check results as PASS/WARN/FAIL/SKIP lines, each fix indented under its check.
enum CheckTable {
    static func render(_ report: CheckReport) -> String {
        var out = ""
        for check in report.checks {
            out += "\(check.status.rawValue.uppercased().padding(4))  \(check.id): \(check.message)\n"
            if check.status == .fail || check.status == .warn {
                for subject in check.subjects {
                    let parts = [subject.hctl, subject.wwid, subject.detail].compactMap { $0 }
                    out += "      - \(subject.name)" + (parts.isEmpty ? "" : " (\(parts.joined(separator: ", ")))") + "\n"
                }
                if let fix = check.fix { out += "      fix: \(fix)\n" }
            }
        }
        return out
    }
}

extension String {
    fileprivate func padding(_ width: Int) -> String {
        count >= width ? self : self + String(repeating: " ", count: width - count)
    }
}
