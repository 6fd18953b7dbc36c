#!/usr/bin/env python3
"""Writes a synthetic sysfs/procfs tree of a VMware guest with N SCSI disks on vmw_pvscsi HBAs.

Used by `Scripts/bench discovery` as the `--root` fixture for `mt-agent disks --root DIR` and
`lsblk --sysroot DIR`. The layout follows what a 6.x kernel shows for a PVSCSI guest:

  /sys/devices/pci0000:00/0000:00:15.0/0000:03:00.0/host0/target0:0:1/0:0:1:0/block/sdb
  /sys/class/block/sdb       -> ../../devices/.../block/sdb
  /sys/block/sdb             -> ../devices/.../block/sdb
  /sys/dev/block/8:16        -> ../../devices/.../block/sdb
  /sys/class/scsi_host/host0 -> ../../devices/.../host0/scsi_host/host0   (proc_name: vmw_pvscsi)

Every link is relative, as the kernel makes them, so the tree resolves inside DIR. Disk i has
the NAA-6 identifier 6000c29<25 hex digits derived from i> in vpd_pg83, vpd_pg80 and wwid
(what a VM with disk.EnableUUID=TRUE shows). sda is the system disk (EFI, /boot, / partitions,
mounted); sdb1 is swap; every odd-numbered disk carries one data partition.

Usage: make_vmware_root.py DIR [--disks 60] [--hosts 4]
Prints a JSON summary of what it wrote: per disk the fields `mt-agent disks --json` should
report (hctl, driver, wwid, sizes, partitions with start/size/mounts, role).
"""
import argparse
import hashlib
import json
import os
import sys

# PVSCSI adapters as ESXi places them: PCIe root ports 15.0, 16.0, 17.0, 18.0 → buses 03, 0b, 13, 1b.
PCI_SLOTS = [("0000:00:15.0", "0000:03:00.0"), ("0000:00:16.0", "0000:0b:00.0"),
             ("0000:00:17.0", "0000:13:00.0"), ("0000:00:18.0", "0000:1b:00.0")]
# PVSCSI: target 7 is the adapter itself, so 15 disks per bus use targets 0-6 and 8-15.
TARGETS = [t for t in range(16) if t != 7]
# sd majors, 16 disks each (sda..sdp on 8, sdq..sdaf on 65, ...).
SD_MAJORS = [8] + list(range(65, 72)) + list(range(128, 136))

# What /proc/self/mountinfo and /proc/swaps below say about the partitions.
MOUNTS = {"sda1": ["/boot/efi"], "sda2": ["/boot"], "sda3": ["/"]}

SECTOR = 512
GiB = 1 << 30
MiB = 1 << 20


def sd_name(i):
    """0 -> sda, 25 -> sdz, 26 -> sdaa: the kernel's sd_format_disk_name."""
    s = ""
    i += 1
    while i > 0:
        i, r = divmod(i - 1, 26)
        s = chr(ord("a") + r) + s
    return "sd" + s


def write(path, content, mode="w"):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, mode) as f:
        f.write(content)


def link(path, target):
    """A relative symlink at `path` pointing to `target` (both absolute host paths in the tree)."""
    os.makedirs(os.path.dirname(path), exist_ok=True)
    # Like kernfs_get_target_path(): climb from the link's directory until reaching a proper
    # ancestor of the target's parent, so device -> ../../../0:0:1:0 (not "../.."): lsblk takes
    # the HCTL from the link text's last component.
    base, ups = os.path.dirname(path), 0
    while not target.startswith(base + "/"):
        base, ups = os.path.dirname(base), ups + 1
    rel = "../" * ups + target[len(base) + 1:]
    if os.path.lexists(path):
        os.unlink(path)
    os.symlink(rel, path)


def naa(i):
    # VMware: NAA-6, IEEE company id 00:0c:29, then a per-disk vendor-specific part.
    tail = hashlib.sha256(b"mt-agent-bench-%d" % i).hexdigest()[:25]
    return "6000c29" + tail


def vpd83(naa_hex):
    body = bytes.fromhex(naa_hex)
    assert len(body) == 16
    desc = bytes([0x01, 0x03, 0x00, len(body)]) + body   # binary, LUN association, NAA
    return bytes([0x00, 0x83, 0x00, len(desc)]) + desc


def vpd80(serial):
    s = serial.encode()
    return bytes([0x00, 0x80, 0x00, len(s)]) + s


def block_attrs(d, devno, size_sectors, removable=True):
    write(f"{d}/dev", f"{devno}\n")
    write(f"{d}/size", f"{size_sectors}\n")
    write(f"{d}/ro", "0\n")
    if removable:
        write(f"{d}/removable", "0\n")
    for sub in ("holders", "power"):
        os.makedirs(f"{d}/{sub}", exist_ok=True)
    write(f"{d}/uevent", "")
    write(f"{d}/stat", "     120        0     5040       40        0        0        0        0        0       48       40        0        0        0        0        0        0\n")
    write(f"{d}/inflight", "       0        0\n")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("root")
    ap.add_argument("--disks", type=int, default=60)
    ap.add_argument("--hosts", type=int, default=4)
    args = ap.parse_args()
    root = os.path.abspath(args.root)
    if args.hosts > len(PCI_SLOTS) or args.disks > args.hosts * len(TARGETS):
        sys.exit(f"at most {len(PCI_SLOTS)} hosts x {len(TARGETS)} targets")
    S = root + "/sys"
    summary = {"disks": {}, "partitions": []}

    write(f"{S}/bus/scsi/drivers/sd/uevent", "")
    for h in range(args.hosts):
        bridge, hba = PCI_SLOTS[h]
        pci = f"{S}/devices/pci0000:00/{bridge}/{hba}"
        write(f"{pci}/vendor", "0x15ad\n")
        write(f"{pci}/device", "0x07c0\n")
        write(f"{pci}/class", "0x010700\n")
        write(f"{S}/bus/pci/drivers/vmw_pvscsi/uevent", "")
        link(f"{pci}/driver", f"{S}/bus/pci/drivers/vmw_pvscsi")
        hostdir = f"{pci}/host{h}"
        write(f"{hostdir}/uevent", "DEVTYPE=scsi_host\n")
        sh = f"{hostdir}/scsi_host/host{h}"
        write(f"{sh}/proc_name", "vmw_pvscsi\n")
        write(f"{sh}/unique_id", f"{h + 1}\n")
        write(f"{sh}/can_queue", "254\n")
        write(f"{sh}/host_busy", "0\n")
        link(f"{S}/class/scsi_host/host{h}", sh)

    disk_sizes = [64 * GiB] + [(16 << (i % 4)) * GiB for i in range(1, args.disks)]
    for i in range(args.disks):
        h, t = divmod(i, len(TARGETS))
        t = TARGETS[t]
        bridge, hba = PCI_SLOTS[h]
        name = sd_name(i)
        major, minor = SD_MAJORS[i // 16], (i % 16) * 16
        hctl = f"{h}:0:{t}:0"
        target = f"{S}/devices/pci0000:00/{bridge}/{hba}/host{h}/target{h}:0:{t}"
        dev = f"{target}/{hctl}"
        ident = naa(i)

        write(f"{target}/uevent", "DEVTYPE=scsi_target\n")
        write(f"{dev}/vendor", "VMware  \n")
        write(f"{dev}/model", "Virtual disk    \n")
        write(f"{dev}/rev", "2.0 \n")
        write(f"{dev}/type", "0\n")
        write(f"{dev}/scsi_level", "7\n")
        write(f"{dev}/state", "running\n")
        write(f"{dev}/queue_depth", "64\n")
        write(f"{dev}/device_blocked", "0\n")
        write(f"{dev}/uevent", "DEVTYPE=scsi_device\nDRIVER=sd\nMODALIAS=scsi:t-0x00\n")
        write(f"{dev}/wwid", f"naa.{ident}\n")
        write(f"{dev}/vpd_pg83", vpd83(ident), "wb")
        write(f"{dev}/vpd_pg80", vpd80(ident), "wb")
        write(f"{dev}/scsi_device/{hctl}/uevent", "")
        write(f"{dev}/scsi_disk/{hctl}/cache_type", "write through\n")
        write(f"{dev}/scsi_generic/sg{i}/dev", f"21:{i}\n")
        link(f"{dev}/driver", f"{S}/bus/scsi/drivers/sd")
        link(f"{dev}/subsystem", f"{S}/bus/scsi")

        b = f"{dev}/block/{name}"
        size = disk_sizes[i] // SECTOR
        block_attrs(b, f"{major}:{minor}", size)
        write(f"{b}/range", "16\n")
        write(f"{b}/ext_range", "256\n")
        write(f"{b}/capability", "50\n")
        write(f"{b}/uevent", f"MAJOR={major}\nMINOR={minor}\nDEVNAME={name}\nDEVTYPE=disk\n")
        os.makedirs(f"{b}/slaves", exist_ok=True)
        q = f"{b}/queue"
        for attr, value in [("logical_block_size", 512), ("physical_block_size", 512), ("minimum_io_size", 512),
                            ("optimal_io_size", 0), ("rotational", 1), ("discard_granularity", 0),
                            ("discard_max_bytes", 0), ("discard_zeroes_data", 0), ("hw_sector_size", 512),
                            ("max_sectors_kb", 512), ("nr_requests", 64), ("read_ahead_kb", 128),
                            ("add_random", 0), ("dax", 0), ("alignment_offset", 0)]:
            write(f"{q}/{attr}", f"{value}\n")
        write(f"{q}/scheduler", "[mq-deadline] none\n")
        write(f"{q}/zoned", "none\n")
        write(f"{q}/write_cache", "write through\n")
        write(f"{b}/alignment_offset", "0\n")
        write(f"{b}/discard_alignment", "0\n")
        link(f"{b}/device", dev)
        link(f"{b}/subsystem", f"{S}/class/block")
        link(f"{S}/class/block/{name}", b)
        link(f"{S}/block/{name}", b)
        link(f"{S}/dev/block/{major}:{minor}", b)

        # Partitions: sda = EFI + /boot + /, sdb1 = swap, odd-numbered disks one data partition.
        if i == 0:
            parts = [(2048, 1 * GiB // SECTOR), (2048 + GiB // SECTOR, 2 * GiB // SECTOR)]
            start3 = parts[-1][0] + parts[-1][1]
            parts.append((start3, size - start3 - 2048))
        elif i == 1 or i % 2 == 1:
            parts = [(2048, size - 4096)]
        else:
            parts = []
        for n, (start, psize) in enumerate(parts, 1):
            pname = f"{name}{n}"
            p = f"{b}/{pname}"
            block_attrs(p, f"{major}:{minor + n}", psize, removable=False)
            write(f"{p}/partition", f"{n}\n")
            write(f"{p}/start", f"{start}\n")
            write(f"{p}/alignment_offset", "0\n")
            write(f"{p}/discard_alignment", "0\n")
            write(f"{p}/uevent", f"MAJOR={major}\nMINOR={minor + n}\nDEVNAME={pname}\nDEVTYPE=partition\nPARTN={n}\n")
            link(f"{p}/subsystem", f"{S}/class/block")
            link(f"{S}/class/block/{pname}", p)
            link(f"{S}/dev/block/{major}:{minor + n}", p)
            summary["partitions"].append(pname)
        summary["disks"][name] = {
            "hctl": hctl, "driver": "vmw_pvscsi", "vendor": "VMware", "model": "Virtual disk", "revision": "2.0",
            "scsiDeviceType": 0, "transport": "scsi", "wwid": "3" + ident, "kernelWWID": "naa." + ident,
            "serial": ident, "devno": f"{major}:{minor}", "sizeBytes": size * SECTOR,
            "role": "system" if i < 2 else "free",
            "partitions": [{"name": f"{name}{n}", "number": n, "devno": f"{major}:{minor + n}",
                            "startBytes": start * SECTOR, "sizeBytes": psize * SECTOR,
                            "mountpoints": MOUNTS.get(f"{name}{n}", []), "swap": f"{name}{n}" == "sdb1"}
                           for n, (start, psize) in enumerate(parts, 1)]}

    # DMI, as a VMware VM reports it (the class dir is a link into devices/virtual like the kernel's).
    dmi = f"{S}/devices/virtual/dmi/id"
    for attr, value in [("sys_vendor", "VMware, Inc."), ("product_name", "VMware Virtual Platform"),
                        ("board_vendor", "Intel Corporation"), ("bios_vendor", "VMware, Inc."),
                        ("product_serial", "VMware-42 1a 2b 3c 4d 5e 6f 70-81 92 a3 b4 c5 d6 e7 f8"),
                        ("product_uuid", "421a2b3c-4d5e-6f70-8192-a3b4c5d6e7f8")]:
        write(f"{dmi}/{attr}", value + "\n")
    link(f"{S}/class/dmi/id", dmi)

    # procfs: proc/self is a plain directory here (no pid to point at).
    P = root + "/proc"
    sda = summary["disks"]["sda"]["devno"].split(":")[0]
    write(f"{P}/self/mountinfo", "".join([
        f"21 1 {sda}:3 / / rw,relatime shared:1 - ext4 /dev/sda3 rw,errors=remount-ro\n",
        "22 21 0:20 / /sys rw,nosuid,nodev,noexec,relatime shared:7 - sysfs sysfs rw\n",
        "23 21 0:21 / /proc rw,nosuid,nodev,noexec,relatime shared:12 - proc proc rw\n",
        "24 21 0:5 / /dev rw,nosuid,relatime shared:2 - devtmpfs udev rw,size=8143652k,nr_inodes=2035913,mode=755\n",
        "25 24 0:22 / /dev/pts rw,nosuid,noexec,relatime shared:3 - devpts devpts rw,gid=5,mode=620,ptmxmode=000\n",
        "26 21 0:23 / /run rw,nosuid,nodev,noexec,relatime shared:5 - tmpfs tmpfs rw,size=1631436k,mode=755\n",
        f"30 21 {sda}:2 / /boot rw,relatime shared:58 - ext4 /dev/sda2 rw\n",
        f"31 30 {sda}:1 / /boot/efi rw,relatime shared:60 - vfat /dev/sda1 rw,fmask=0077,dmask=0077,codepage=437,iocharset=ascii,shortname=mixed,utf8,errors=remount-ro\n",
    ]))
    write(f"{P}/swaps", "Filename\t\t\t\tType\t\tSize\t\tUsed\t\tPriority\n"
                        "/dev/sdb1                               partition\t16775164\t0\t\t-2\n")
    write(f"{P}/sys/kernel/hostname", "vmw-bench-60\n")
    write(f"{P}/sys/kernel/osrelease", "6.1.0-18-amd64\n")
    flags = "fpu vme de pse tsc msr pae mce cx8 apic sep mtrr pge mca cmov pat pse36 clflush mmx fxsr sse sse2 ss syscall nx pdpe1gb rdtscp lm constant_tsc arch_perfmon nopl xtopology tsc_reliable nonstop_tsc cpuid pni pclmulqdq ssse3 fma cx16 pcid sse4_1 sse4_2 x2apic movbe popcnt aes xsave avx f16c rdrand hypervisor lahf_lm abm 3dnowprefetch avx2 smep bmi2 invpcid"
    write(f"{P}/cpuinfo", "".join(
        f"processor\t: {c}\nvendor_id\t: GenuineIntel\nmodel name\t: Intel(R) Xeon(R) Gold 6248R CPU @ 3.00GHz\nflags\t\t: {flags}\n\n"
        for c in range(4)))
    write(f"{root}/etc/os-release", 'PRETTY_NAME="Debian GNU/Linux 12 (bookworm)"\nNAME="Debian GNU/Linux"\nVERSION_ID="12"\nID=debian\n')

    json.dump(summary, sys.stdout)
    print()


if __name__ == "__main__":
    main()
