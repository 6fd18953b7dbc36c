import Testing

@testable import MTAgentSetup

private let root = MultipathConf.Blacklisted(wwid: "36000c2911223344a", what: "system disk sda, holds /")

@Suite("multipath.conf merge", .tags(.small))
struct MultipathMergeTests {
    @Test func keepsTheAdminsSettingsAndChangesOnlyWhatConflicts() throws {
        let admin = """
            # site settings (storage team)
            defaults {
            \tuser_friendly_names yes   # trailing comments are the admin's
            \tpolling_interval 10
            }
            devices {
            \tdevice {
            \t\tvendor "NETAPP"
            \t\tproduct "LUN.*"
            \t\tuser_friendly_names yes
            \t}
            }
            blacklist {
            \tdevnode "^sd[z]"
            }

            """
        let merged = try MultipathConf.merge(admin, path: "/etc/multipath.conf", blacklist: [root])
        #expect(merged.text == """
            # site settings (storage team)
            defaults {
            \tuser_friendly_names no   # trailing comments are the admin's
            \tpolling_interval 10
            \tfind_multipaths no
            }
            devices {
            \tdevice {
            \t\tvendor "NETAPP"
            \t\tproduct "LUN.*"
            \t\tuser_friendly_names yes
            \t}
            }
            blacklist {
            \tdevnode "^sd[z]"
            \t# mt-agent setup: system disk sda, holds /: never a multipath map
            \twwid "36000c2911223344a"
            }

            """)
        #expect(merged.changes == [
            "defaults: user_friendly_names yes → no", "defaults: add find_multipaths no",
            "blacklist: add wwid 36000c2911223344a (system disk sda, holds /)",
        ])
        let again = try MultipathConf.merge(merged.text, path: "/etc/multipath.conf", blacklist: [root])
        #expect(again.changes.isEmpty)
        #expect(again.text == merged.text)
    }

    @Test func createsTheFileWhenThereIsNone() throws {
        let merged = try MultipathConf.merge(nil, path: "/etc/multipath.conf", blacklist: [root])
        #expect(merged.text.hasPrefix("# multipath.conf written by mt-agent setup"))
        #expect(merged.text.contains("defaults {\n    user_friendly_names no\n    find_multipaths no\n}\n"))
        #expect(merged.text.hasSuffix("blacklist {\n    # mt-agent setup: system disk sda, holds /: never a multipath map\n    wwid \"36000c2911223344a\"\n}\n"))
    }

    @Test func anAnchoredOrQuotedWWIDAlreadyListedIsKept() throws {
        for entry in ["wwid \"^36000c2911223344a$\"", "wwid 36000c2911223344a"] {
            let text = "defaults {\n user_friendly_names no\n find_multipaths \"no\"\n}\nblacklist {\n \(entry)\n}\n"
            let merged = try MultipathConf.merge(text, path: "/etc/multipath.conf", blacklist: [root])
            #expect(merged.changes.isEmpty, "\(entry)")
        }
    }

    @Test func aBlacklistExceptionForTheSystemDiskIsCommentedOut() throws {
        let text = "blacklist_exceptions {\n\tproperty \"(SCSI_IDENT_|ID_WWN)\"\n\twwid \"36000c2911223344a\"\n}\n"
        let merged = try MultipathConf.merge(text, path: "/etc/multipath.conf", blacklist: [root])
        #expect(merged.text.hasPrefix("blacklist_exceptions {\n\tproperty \"(SCSI_IDENT_|ID_WWN)\"\n\t# mt-agent setup: a system disk must never be a multipath map\n\t# wwid \"36000c2911223344a\"\n}\n"))
        #expect(merged.changes.contains("blacklist_exceptions: comment out wwid 36000c2911223344a (a system disk)"))
    }

    @Test func oneLineSectionsAreOpenedUp() throws {
        let merged = try MultipathConf.merge(
            "defaults { user_friendly_names yes }\nblacklist { devnode \"^hd[a-z]\" }", path: "/etc/multipath.conf", blacklist: [root])
        #expect(merged.text == """
            defaults { user_friendly_names no
                find_multipaths no
            }
            blacklist { devnode "^hd[a-z]"
                # mt-agent setup: system disk sda, holds /: never a multipath map
                wwid "36000c2911223344a"
            }
            """, "a file without a final newline keeps it that way")
        #expect(try MultipathConf.merge(merged.text, path: "/etc/multipath.conf", blacklist: [root]).changes.isEmpty)
    }

    @Test(arguments: [
        ("defaults {\n", "line 1: section 'defaults' is never closed (missing })"),
        ("}\n", "line 1: '}' without a matching '{'"),
        ("blacklist {\n wwid \"3600\n}\n", "line 2: a string is not closed (missing \")"),
        ("defaults {\n}\n{\n", "line 3: unexpected '{'"),
    ])
    func brokenFilesAreOneLineNamingTheLine(_ text: String, _ reason: String) {
        #expect(throws: SetupError.self) { try MultipathConf.merge(text, path: "/etc/multipath.conf", blacklist: [root]) }
        do {
            _ = try MultipathConf.merge(text, path: "/etc/multipath.conf", blacklist: [root])
        } catch {
            #expect("\(error)".contains("/etc/multipath.conf \(reason)"), "\(error)")
        }
    }
}

@Suite("lvm.conf merge", .tags(.small))
struct LVMMergeTests {
    let filter = LVMConf.filter(accepting: ["^/dev/disk/by-id/scsi-36000c2911223344a(-part[0-9]+)?$"])

    @Test func aMultiLineGlobalFilterIsCommentedOutAndReplaced() throws {
        let text = """
            devices {
            \tdir = "/dev"
            \tglobal_filter = [
            \t\t"r|^/dev/sr[0-9]+$|",
            \t\t"r|^/dev/fd[0-9]+$|"
            \t]
            \tfilter = [ "r|/dev/cdrom|" ]
            }

            """
        let merged = try LVMConf.merge(text, path: "/etc/lvm/lvm.conf", filter: filter)
        #expect(merged.text == """
            devices {
            \tdir = "/dev"
            \t# mt-agent setup: replaced; LVM may use only the system disks
            \t# global_filter = [
            \t\t# "r|^/dev/sr[0-9]+$|",
            \t\t# "r|^/dev/fd[0-9]+$|"
            \t# ]
            \tglobal_filter = [ "a|^/dev/disk/by-id/scsi-36000c2911223344a(-part[0-9]+)?$|", "r|.*|" ]
            \tfilter = [ "r|/dev/cdrom|" ]
            }

            """)
        #expect(try LVMConf.merge(merged.text, path: "/etc/lvm/lvm.conf", filter: filter).changes.isEmpty)
    }

    @Test func aFileWithoutDevicesSectionGetsOne() throws {
        let merged = try LVMConf.merge("global {\n    umask = 077\n}\n", path: "/etc/lvm/lvm.conf", filter: filter)
        #expect(merged.text.hasPrefix("global {\n    umask = 077\n}\n\ndevices {\n    # mt-agent setup"))
        #expect(merged.text.hasSuffix("    global_filter = [ \"a|^/dev/disk/by-id/scsi-36000c2911223344a(-part[0-9]+)?$|\", \"r|.*|\" ]\n}\n"))
    }

    @Test func duplicatesAreLeftAsOne() throws {
        let line = LVMConf.render(filter)
        let merged = try LVMConf.merge("devices {\n\t\(line)\n\t\(line)\n}\n", path: "/etc/lvm/lvm.conf", filter: filter)
        #expect(merged.changes == ["devices: comment out a duplicate global_filter"])
        #expect(try LVMConf.merge(merged.text, path: "/etc/lvm/lvm.conf", filter: filter).changes.isEmpty)
    }

    @Test func useDevicesFileIsRead() throws {
        #expect(try LVMConf.useDevicesFile("devices {\n\t# use_devicesfile = 1\n}\n", path: "lvm.conf") == nil)
        #expect(try LVMConf.useDevicesFile("devices {\n\tuse_devicesfile = 0\n}\n", path: "lvm.conf") == false)
        #expect(try LVMConf.useDevicesFile("devices {\n\tuse_devicesfile = 1\n}\n", path: "lvm.conf") == true)
    }

    @Test func aKeyWithoutEqualsIsAnError() {
        #expect(throws: SetupError.unparsable(path: "/etc/lvm/lvm.conf", line: 2, reason: "expected '=' after 'dir'")) {
            try LVMConf.merge("devices {\n\tdir \"/dev\"\n}\n", path: "/etc/lvm/lvm.conf", filter: filter)
        }
    }
}

@Suite("mdadm.conf merge", .tags(.small))
struct MdadmMergeTests {
    @Test func aDifferentAutoLineIsReplacedInPlace() {
        let merged = MdadmConf.merge("# mdadm.conf written out by anaconda\nMAILADDR root\nAUTO +imsm +1.x -all\n", arrays: [])
        #expect(merged.text == "# mdadm.conf written out by anaconda\nMAILADDR root\n" + MdadmConf.note.joined(separator: "\n") + "\n#AUTO +imsm +1.x -all\nAUTO -all\n")
        #expect(MdadmConf.merge(merged.text, arrays: []).changes.isEmpty)
    }

    @Test func theAdminsArraysStayAndSystemArraysAreAdded() {
        let text = "HOMEHOST <system>\nARRAY /dev/md/scratch metadata=1.2 UUID=5e1c0a2b:7d3f4e91:0a6b2c8d:41f7e3a9 name=h:scratch\n"
        let system = "ARRAY /dev/md0 metadata=1.2 name=h:0 UUID=11111111:22222222:33333333:44444444"
        let listedAgain = "ARRAY /dev/md/scratch UUID=5E1C0A2B:7D3F4E91:0A6B2C8D:41F7E3A9"
        let merged = MdadmConf.merge(text, arrays: [system, listedAgain])
        #expect(merged.text.hasPrefix(text))
        #expect(merged.text.hasSuffix("AUTO -all\n" + system + "\n"))
        #expect(merged.changes == ["add AUTO -all", "add " + system])
        #expect(MdadmConf.merge(merged.text, arrays: [system, listedAgain]).changes.isEmpty)
    }

    @Test func abbreviatedAndContinuedAutoLinesCount() {
        #expect(MdadmConf.merge("aut -all\n", arrays: []).changes.isEmpty)
        let merged = MdadmConf.merge("AUTO +1.x\n  -all\nMAILADDR root\n", arrays: [])
        #expect(merged.text.contains("#AUTO +1.x\n#  -all\nAUTO -all\nMAILADDR root\n"))
    }
}
