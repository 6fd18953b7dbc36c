#!/usr/bin/env python3
"""The VM scenarios of Scripts/vm-test and Scripts/vm-fixtures: what each VM is given.

One place holds, per scenario, the qemu hardware (controllers, disks and their identities), the shell
snippet the guest runs before discovery (in-guest LIO LUNs, device-mapper maps) and what mt-agent must
report about it. vm_assert.py checks the guest's output against these expectations.

Commands (used by the bash drivers):
  vm_scenarios.py list                      scenario names, one a line
  vm_scenarios.py qemu-args NAME WORKDIR    create NAME's disk images in WORKDIR, print qemu args one a line
  vm_scenarios.py guest-scripts DIR         write DIR/NAME.sh, the guest side of every scenario
"""

import os
import struct
import subprocess
import sys
from dataclasses import dataclass, field
from typing import Optional

MiB = 1024 * 1024

VMWARE_SMBIOS = [
    # qemu's option parser escapes a comma by doubling it.
    "-smbios",
    "type=1,manufacturer=VMware,, Inc.,product=VMware Virtual Platform,"
    "serial=VMware-42 1a 5d 6c 0e 3b 7f 21-9c 4e 51 aa 03 6d 88 f0,"
    "uuid=421a5d6c-0e3b-7f21-9c4e-51aa036d88f0",
]


@dataclass
class Filesystem:
    """One MBR partition holding an ext4 filesystem, made on the host before boot."""

    label: str
    uuid: str
    mount: Optional[str] = None  # where the guest mounts it, if anywhere
    start_mib: int = 1
    size_mib: int = 16
    disk_signature: int = 0x6D740001


@dataclass
class Disk:
    """A disk of the scenario: given by qemu, or made in the guest (guest=True). `key` names it in
    messages; sizes are unique per LUN so the assertions find each disk in the guest by size."""

    key: str
    bus: str  # id of a SCSI controller, or "virtio-blk" / "nvme:<ctrl-id>"
    size_mib: int
    scsi_id: int = 0
    lun: int = 0
    vendor: Optional[str] = None
    product: Optional[str] = None
    serial: Optional[str] = None
    wwn: Optional[int] = None  # 64-bit: qemu emits an 8-byte NAA designator
    device_id: Optional[str] = None  # None: qemu's default (serial, else drive name) -> vendor designator
    eui64: Optional[int] = None  # NVMe namespace
    ns_uuid: Optional[str] = None  # NVMe namespace
    image: Optional[str] = None  # share another disk's image (another path to the same LUN)
    fs: Optional[Filesystem] = None
    # Expectations
    expect_driver: object = None  # a value, or a tuple of accepted values (SCSI disks only)
    expect_wwid: Optional[str] = None  # None: must be null
    expect_designators: list = field(default_factory=list)  # [(type, value, association)]
    expect_serial: Optional[str] = None
    expect_vendor: Optional[str] = None
    expect_model: Optional[str] = None
    expect_role: str = "free"
    scsi: bool = True
    guest: bool = False  # made inside the guest by the scenario's setup (LIO, NVMe/TCP), not by qemu
    expect_nvme: Optional[dict] = None  # NVMe namespace identities: {"nguid":…, "uuid":…, "eui64":…}


@dataclass
class Scenario:
    name: str
    title: str
    smbios: list
    controllers: list  # (qemu device, id)
    disks: list
    guest_setup: str = ""
    expect_hypervisor: tuple = ("vmware",)
    # enable-uuid: "fail" with exactly these disk keys as subjects, or "pass".
    expect_enable_uuid: str = "pass"
    expect_enable_uuid_subjects: tuple = ()
    expect_multipath: Optional[dict] = None


def naa8(wwn: int) -> str:
    return "%016x" % wwn


def vm_disk(key, bus, size_mib, scsi_id, wwn=None, serial=None, device_id="", driver="vmw_pvscsi",
            vendor="VMware", product="Virtual disk", fs=None, image=None, role="free"):
    """A VMware-style virtual disk. wwn+serial: disk.EnableUUID=TRUE; neither and device_id="": off."""
    designators = []
    if wwn is not None:
        designators.append(("naa", naa8(wwn), "lun"))
    if device_id is None and serial:
        designators.append(("vendor", serial[:20], "lun"))  # qemu cuts its default device_id to 20 bytes
    return Disk(key=key, bus=bus, size_mib=size_mib, scsi_id=scsi_id, vendor=vendor, product=product,
                serial=serial, wwn=wwn, device_id=device_id, fs=fs, image=image,
                expect_driver=driver, expect_wwid=("3" + naa8(wwn)) if wwn is not None else None,
                expect_designators=designators, expect_serial=serial, expect_vendor=vendor,
                expect_model=product, expect_role=role)


# -- the in-guest LIO LUN: 16-byte NAA-6 with VMware's company id, and a T10 vendor designator ------------
LIO_SERIAL = "4a8e7b1f3c5d6e7f8091a2b3c4d5e6f7"
LIO_NAA = "6000c29" + LIO_SERIAL[:25]  # LIO: 6 + company_id + the serial's first 25 hex digits
LIO_LUN = Disk(
    key="lio-naa16", bus="tcm_loop", size_mib=8, guest=True, expect_driver=("tcm_loop", "tcm_loopback"),
    expect_wwid="3" + LIO_NAA, expect_serial=LIO_SERIAL, expect_vendor="LIO-ORG", expect_model="RAMDISK-MCP",
    expect_designators=[("naa", LIO_NAA, "lun"), ("t10", "LIO-ORG RAMDISK-MCP:" + LIO_SERIAL, "lun")],
)

LIO_SETUP = r"""
mt_lio_lun() {  # name pages company_id serial
    T=/sys/kernel/config/target
    B=$T/core/rd_mcp_0/$1
    mkdir -p $B || return 1
    echo rd_pages=$2 > $B/control
    echo 1 > $B/enable
    echo $3 > $B/wwn/company_id
    echo $4 > $B/wwn/vpd_unit_serial
    W=$T/loopback/naa.5001405a1b2c3d01
    mkdir -p $W/tpgt_1/lun/lun_0
    echo naa.5001405a1b2c3d02 > $W/tpgt_1/nexus
    ln -s $B $W/tpgt_1/lun/lun_0/mt_port
}
"""


NVMET_NGUID = "5a1c0ffee0d15ea5e0000000000000a1"
NVMET_UUID = "9d6f1c2a-3b4e-4f50-8a61-72b3c4d5e6f7"
NVMET_SETUP = r"""
ip link set lo up
C=/sys/kernel/config/nvmet
S=$C/subsystems/nqn.2024-01.io.mt-agent:vm
mkdir $S
echo 1 > $S/attr_allow_any_host
echo MTNVMET0001 > $S/attr_serial
echo "mt-agent nvmet" > $S/attr_model
mkdir $S/namespaces/1
dd if=/dev/zero of=/tmp/nvmet-ns1.img bs=1M count=20 2>/dev/null
echo /tmp/nvmet-ns1.img > $S/namespaces/1/device_path
echo 1 > $S/namespaces/1/buffered_io  # tmpfs has no O_DIRECT
echo %s > $S/namespaces/1/device_nguid
echo %s > $S/namespaces/1/device_uuid
echo 1 > $S/namespaces/1/enable
mkdir $C/ports/1
echo tcp > $C/ports/1/addr_trtype
echo ipv4 > $C/ports/1/addr_adrfam
echo 127.0.0.1 > $C/ports/1/addr_traddr
echo 4420 > $C/ports/1/addr_trsvcid
ln -s $S $C/ports/1/subsystems/
echo "transport=tcp,traddr=127.0.0.1,trsvcid=4420,nqn=nqn.2024-01.io.mt-agent:vm" > /dev/nvme-fabrics
""" % (NVMET_NGUID, NVMET_UUID)


def scenarios():
    out = []

    # 1. VMware guest, PVSCSI: EnableUUID on, EnableUUID off, and an in-guest 16-byte NAA LUN.
    out.append(Scenario(
        name="vmware-pvscsi",
        title="VMware PVSCSI: EnableUUID on and off, 16-byte NAA + T10 via LIO",
        smbios=VMWARE_SMBIOS,
        controllers=[("pvscsi", "pvscsi0")],
        disks=[
            LIO_LUN,
            vm_disk("uuid-on", "pvscsi0", 64, 0, wwn=0x6000c29a1b2c3d4e,
                    serial="6000c29a1b2c3d4e5f60718293a4b5c6",
                    fs=Filesystem(label="retention", uuid="0b9a3f52-7c1e-4d6a-9e0f-3a5b7c9d1e2f",
                                  mount="/mnt/retention")),
            vm_disk("uuid-on-vendor-desig", "pvscsi0", 40, 1, wwn=0x6000c29f0e1d2c3b,
                    serial="6000c29f0e1d2c3b4a59687766554433", device_id=None),
            vm_disk("uuid-off", "pvscsi0", 48, 2),
        ],
        guest_setup=LIO_SETUP + "mt_lio_lun lun0 %d 0x000c29 %s\n" % (8 * 256, LIO_SERIAL),
        expect_enable_uuid="fail",
        expect_enable_uuid_subjects=("uuid-off",),
    ))

    # 2. VMware guest, "LSI Logic SAS" controller (qemu's LSI SAS1068, Linux mptsas).
    out.append(Scenario(
        name="vmware-lsi-sas",
        title="VMware LSI Logic SAS (mptsas), EnableUUID on",
        smbios=VMWARE_SMBIOS,
        controllers=[("mptsas1068", "lsi0")],
        disks=[
            # /boot is a system mount point: this disk is the system disk.
            vm_disk("lsi-0", "lsi0", 56, 0, wwn=0x6000c2911223344a, driver="mptsas",
                    serial="6000c2911223344a5566778899aabbcc", role="system",
                    fs=Filesystem(label="boot", uuid="5d2c8e1a-4b3f-4a6e-8c7d-9e0f1a2b3c4d", mount="/boot",
                                  disk_signature=0x6D740002)),
            vm_disk("lsi-1", "lsi0", 44, 1, wwn=0x6000c2955667788b, driver="mptsas",
                    serial="6000c2955667788b99aabbccddeeff00"),
        ],
        expect_enable_uuid="pass",
    ))

    # 3. Two disks cloned from one template: the same NAA and serial.
    dup_wwn, dup_serial = 0x6000c29d00d1e5a7, "6000c29d00d1e5a70123456789abcdef"
    out.append(Scenario(
        name="vmware-cloned",
        title="VMware PVSCSI: two disks with one identity (cloned)",
        smbios=VMWARE_SMBIOS,
        controllers=[("pvscsi", "pvscsi0")],
        disks=[
            vm_disk("unique", "pvscsi0", 36, 0, wwn=0x6000c29c0ffee001, serial="6000c29c0ffee0011111222233334444"),
            vm_disk("clone-a", "pvscsi0", 52, 1, wwn=dup_wwn, serial=dup_serial),
            vm_disk("clone-b", "pvscsi0", 60, 2, wwn=dup_wwn, serial=dup_serial),
        ],
        expect_enable_uuid="fail",
        expect_enable_uuid_subjects=("clone-a", "clone-b"),
    ))

    # 4. KVM guest: virtio-blk, NVMe, virtio-scsi. Non-SCSI disks are skipped by enable-uuid.
    out.append(Scenario(
        name="kvm-virtio-nvme",
        title="KVM: virtio-blk, NVMe (EUI-64, UUID), virtio-scsi",
        smbios=[],
        controllers=[("virtio-scsi-pci", "vscsi0"), ("nvme,serial=NVME0SERIAL42", "nvme0")],
        disks=[
            Disk(key="virtio-blk", bus="virtio-blk", size_mib=32, serial="VBLK-SERIAL-0001", scsi=False,
                 expect_driver=None, expect_serial="VBLK-SERIAL-0001"),
            # Linux applies NVME_QUIRK_BOGUS_NID to qemu's NVMe controller (1b36:0010, and 8086:5845 with
            # use-intel-id): it ignores the EUI-64/NGUID/UUID qemu reports, and wwid falls back to
            # "nvme.<vid>-<serial>-<model>-<nsid>". So this namespace has no identity the guest can see.
            Disk(key="nvme-pci", bus="nvme:nvme0", size_mib=28, eui64=0x0025388b91c3a0f1,
                 ns_uuid="7f3a1c2e-5b4d-4e6f-8a9b-0c1d2e3f4a5b", scsi=False, expect_serial="NVME0SERIAL42",
                 expect_model="QEMU NVMe Ctrl"),
            # An NVMe/TCP namespace exported and connected inside the guest (nvmet over 127.0.0.1): it does
            # carry an NGUID and a UUID. (nvmet in 6.1 cannot set an EUI-64.)
            Disk(key="nvme-tcp", bus="nvme-tcp", size_mib=20, guest=True, scsi=False,
                 expect_serial="MTNVMET0001", expect_model="mt-agent nvmet",
                 expect_nvme={"nguid": NVMET_NGUID, "uuid": NVMET_UUID}),
            Disk(key="virtio-scsi", bus="vscsi0", size_mib=24, scsi_id=3, lun=0, wwn=0x5000c50015ea71a2,
                 serial="VSCSI-SERIAL-7", device_id="", expect_driver="virtio_scsi",
                 expect_wwid="35000c50015ea71a2", expect_designators=[("naa", "5000c50015ea71a2", "lun")],
                 expect_serial="VSCSI-SERIAL-7", expect_vendor="QEMU", expect_model="QEMU HARDDISK"),
        ],
        guest_setup=NVMET_SETUP,
        expect_hypervisor=("kvm", "qemu"),
        expect_enable_uuid="pass",
    ))

    # 5. One LUN seen through two PVSCSI controllers, both paths held by a dm-multipath map.
    mp_wwn, mp_serial = 0x6000c29e1e2e3e4e, "6000c29e1e2e3e4e5e6e7e8e9eaebece"
    out.append(Scenario(
        name="multipath",
        title="one LUN through two controllers, dm-multipath map holding both paths",
        smbios=VMWARE_SMBIOS,
        controllers=[("pvscsi", "pvscsi0"), ("pvscsi", "pvscsi1")],
        disks=[
            vm_disk("path-a", "pvscsi0", 40, 0, wwn=mp_wwn, serial=mp_serial),
            vm_disk("path-b", "pvscsi1", 40, 0, wwn=mp_wwn, serial=mp_serial, image="path-a"),
        ],
        guest_setup=r"""
export DM_DISABLE_UDEV=1
paths=""
for b in /sys/block/sd*; do
    [ "$(cat $b/device/wwid 2>/dev/null)" = "naa.%(naa)s" ] && paths="$paths $(cat $b/dev)"
done
set -- $paths
sectors=$(cat /sys/dev/block/$1/size)
dmsetup create mpatha --uuid mpath-3%(naa)s \
    --table "0 $sectors multipath 0 0 1 1 round-robin 0 2 1 $1 1000 $2 1000"
""" % {"naa": naa8(mp_wwn)},
        expect_multipath={"name": "mpatha", "uuid": "mpath-3" + naa8(mp_wwn), "paths": ("path-a", "path-b")},
        expect_enable_uuid="pass",
    ))
    return out


def by_name(name):
    for s in scenarios():
        if s.name == name:
            return s
    raise SystemExit("unknown scenario %r (have: %s)" % (name, ", ".join(s.name for s in scenarios())))


def guest_disk_count(s):
    """Block devices the guest must see before discovery runs (qemu disks, then guest-made, then dm)."""
    qemu = len([d for d in s.disks if not d.guest])
    return qemu, len(s.disks) + (1 if s.expect_multipath else 0)


# -- host side: disk images and qemu arguments -------------------------------------------------------------

def make_image(path, disk):
    with open(path, "wb") as f:
        f.truncate(disk.size_mib * MiB)
    if disk.fs:
        fs = disk.fs
        # An MBR with one Linux partition (sfdisk is not in Debian's util-linux any more).
        mbr = bytearray(512)
        struct.pack_into("<I", mbr, 440, fs.disk_signature)
        start, count = fs.start_mib * MiB // 512, fs.size_mib * MiB // 512
        struct.pack_into("<B3sB3sII", mbr, 446, 0, b"\xfe\xff\xff", 0x83, b"\xfe\xff\xff", start, count)
        mbr[510:512] = b"\x55\xaa"
        with open(path, "r+b") as f:
            f.write(mbr)
        subprocess.run(["mkfs.ext4", "-q", "-F", "-L", fs.label, "-U", fs.uuid,
                        "-E", "offset=%d" % (fs.start_mib * MiB), path, "%dk" % (fs.size_mib * 1024)],
                       check=True, env=dict(os.environ, E2FSPROGS_FAKE_TIME="1700000000"))


def qemu_args(s, workdir):
    args = list(s.smbios)
    for dev, cid in s.controllers:
        args += ["-device", "%s,id=%s" % (dev, cid)]
    for i, d in enumerate(s.disks):
        if d.guest:
            continue
        img = os.path.join(workdir, "%s.img" % (d.image or d.key))
        if not d.image:
            make_image(img, d)
        shared = d.image is not None or any(o.image == d.key for o in s.disks)
        drive = "if=none,id=d%d,format=raw,file=%s,cache=unsafe" % (i, img.replace(",", ",,"))
        if shared:
            drive += ",file.locking=off"
        args += ["-drive", drive]
        if d.bus == "virtio-blk":
            dev = "virtio-blk-pci,drive=d%d,serial=%s" % (i, d.serial)
        elif d.bus.startswith("nvme:"):
            dev = "nvme-ns,drive=d%d,bus=%s,nsid=1" % (i, d.bus.split(":", 1)[1])
            if d.eui64 is not None:
                dev += ",eui64=0x%016x" % d.eui64
            if d.ns_uuid:
                dev += ",uuid=%s" % d.ns_uuid
        else:
            dev = "scsi-hd,drive=d%d,bus=%s.0,scsi-id=%d,lun=%d" % (i, d.bus, d.scsi_id, d.lun)
            if d.vendor:
                dev += ",vendor=%s" % d.vendor
            if d.product:
                dev += ",product=%s" % d.product.replace(",", ",,")
            if d.serial:
                dev += ",serial=%s" % d.serial
            if d.wwn is not None:
                dev += ",wwn=0x%016x" % d.wwn
            if d.device_id is not None:
                dev += ",device_id=%s" % d.device_id
            if shared:
                dev += ",share-rw=on"
        args += ["-device", dev]
    return args


def guest_script(s):
    qemu_disks, total = guest_disk_count(s)
    mounts = "".join("mt_mount_fs %s %s\n" % (d.fs.label, d.fs.mount) for d in s.disks if d.fs and d.fs.mount)
    return ("# %s: %s\nMT_QEMU_DISKS=%d\nMT_ALL_DISKS=%d\nmt_setup() {\n:\n%s\n}\nmt_mounts() {\n:\n%s}\n"
            % (s.name, s.title, qemu_disks, total, s.guest_setup, mounts))


def main(argv):
    if len(argv) >= 1 and argv[0] == "list":
        for s in scenarios():
            print(s.name)
    elif len(argv) == 3 and argv[0] == "qemu-args":
        for a in qemu_args(by_name(argv[1]), argv[2]):
            print(a)
    elif len(argv) == 2 and argv[0] == "guest-scripts":
        for s in scenarios():
            with open(os.path.join(argv[1], s.name + ".sh"), "w") as f:
                f.write(guest_script(s))
    else:
        print(__doc__, file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
