#!/usr/bin/env python3
"""Checks that mt-agent and lsblk both see the fixture tree as make_vmware_root.py wrote it.

  check_fixture.py SUMMARY.json MT_AGENT.json LSBLK.json

Prints one line per disagreement (naming the tool, the device, the field, expected and got)
and exits 1 when there is any, 0 otherwise.
"""
import json
import sys


def main():
    want = json.load(open(sys.argv[1]))["disks"]
    mt = json.load(open(sys.argv[2]))
    lsblk = json.load(open(sys.argv[3]))["blockdevices"]
    problems = []

    def bad(tool, dev, field, expected, got):
        problems.append(f"{tool}: {dev}: {field}: expected {expected!r}, got {got!r}")

    def names(tool, want, got):
        missing, extra = sorted(set(want) - set(got)), sorted(set(got) - set(want))
        if missing or extra:
            problems.append(f"{tool}: disks: {len(got)} listed, expected {len(want)}; missing {missing}, unexpected {extra}")

    # mt-agent: every disk, every field the tree determines.
    got = {d["name"]: d for d in mt["disks"]}
    names("mt-agent", want, got)
    for name, w in want.items():
        d = got.get(name)
        if d is None:
            continue
        for field, value in w.items():
            if field == "partitions":
                continue
            if d.get(field) != value:
                bad("mt-agent", name, field, value, d.get(field))
        naa = [x for x in d.get("designators", []) if x.get("type") == "naa" and x.get("association") == "lun"]
        if [x.get("value") for x in naa] != [w["wwid"][1:]] or (naa and naa[0].get("naaFormat") != 6):
            bad("mt-agent", name, "designators (one NAA-6, LUN)", w["wwid"][1:], d.get("designators"))
        if d.get("warnings"):
            bad("mt-agent", name, "warnings", [], d["warnings"])
        gp = {p["name"]: p for p in d.get("partitions", [])}
        if [p["name"] for p in d.get("partitions", [])] != [p["name"] for p in w["partitions"]]:
            bad("mt-agent", name, "partitions", [p["name"] for p in w["partitions"]], [p["name"] for p in d.get("partitions", [])])
        for wp in w["partitions"]:
            p = gp.get(wp["name"])
            if p is None:
                continue
            for field, value in wp.items():
                if p.get(field) != value:
                    bad("mt-agent", wp["name"], field, value, p.get(field))
    host = mt.get("host", {})
    for field, value in [("hypervisor", "vmware"), ("systemVendor", "VMware, Inc."), ("productName", "VMware Virtual Platform"),
                         ("hostname", "vmw-bench-60"), ("kernel", "6.1.0-18-amd64"), ("os", "Debian GNU/Linux 12 (bookworm)"),
                         ("source", "sysfs")]:
        if host.get(field) != value:
            bad("mt-agent", "host", field, value, host.get(field))
    if mt.get("warnings"):
        bad("mt-agent", "-", "warnings", [], mt["warnings"])

    # lsblk --sysroot: the same disks, partitions, HCTL and vendor strings (it has no udev db
    # here, so no WWN/serial; TRAN is not derived for vmw_pvscsi).
    lg = {d["name"]: d for d in lsblk if d.get("type") == "disk"}
    names("lsblk", want, lg)
    for name, w in want.items():
        d = lg.get(name)
        if d is None:
            continue
        for field, value in [("hctl", w["hctl"]), ("maj:min", w["devno"])]:
            if d.get(field) != value:
                bad("lsblk", name, field, value, d.get(field))
        if (d.get("vendor") or "").strip() != w["vendor"] or (d.get("model") or "").strip() != w["model"]:
            bad("lsblk", name, "vendor/model", (w["vendor"], w["model"]), (d.get("vendor"), d.get("model")))
        kids = [c["name"] for c in d.get("children", [])]
        if kids != [p["name"] for p in w["partitions"]]:
            bad("lsblk", name, "partitions", [p["name"] for p in w["partitions"]], kids)

    for line in problems:
        print("  MISMATCH " + line)
    nparts = sum(len(w["partitions"]) for w in want.values())
    if not problems:
        print(f"  fixture check: mt-agent and lsblk both list {len(want)} disks and {nparts} partitions as the tree says "
              f"(hctl, driver vmw_pvscsi, wwid 36000c29…, sizes, mounts, swap, roles)")
    sys.exit(1 if problems else 0)


if __name__ == "__main__":
    main()
