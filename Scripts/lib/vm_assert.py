#!/usr/bin/env python3
"""Checks what mt-agent printed inside a test VM against what the VM was given (vm_scenarios.py) and
against the guest's own sysfs (the "sysfs" section that vm_init.sh dumps).

  vm_assert.py check SCENARIO DATA_LOG            assert; exit 1 with one line per failure
  vm_assert.py summary SCENARIO DATA_LOG          one line per disk: name, hctl, driver, wwid, serial
  vm_assert.py fixture SCENARIO DATA_LOG DEST_DIR EXPECTED_JSON
                                                  unpack the "collect" section (mt-agent collect) into DEST_DIR
                                                  and write what the guest printed live to EXPECTED_JSON
  vm_assert.py compare-root SCENARIO DATA_LOG HOST_JSON
                                                  the host's `disks --root DEST_DIR --json` must give the
                                                  identities the guest printed live

Each failure names the scenario, the disk (scenario key and kernel name) and the field.
"""

import base64
import io
import json
import os
import re
import shutil
import sys
import tarfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import vm_scenarios  # noqa: E402

MiB = 1024 * 1024
ANY = object()

DESIGNATOR_TYPES = {0: "vendor", 1: "t10", 2: "eui64", 3: "naa", 4: "relative-port", 5: "port-group",
                    6: "lu-group", 7: "md5", 8: "scsi-name", 9: "protocol-specific", 10: "uuid"}
ASSOCIATIONS = {0: "lun", 1: "target-port", 2: "target-device"}
NUMERIC_TYPES = {"relative-port", "port-group", "lu-group"}
# Identity and address fields that must not change with udevd running or when read back from a capture.
IDENTITY_FIELDS = ("hctl", "driver", "vendor", "model", "revision", "sizeBytes", "logicalBlockSize", "readOnly",
                   "wwid", "serial", "designators", "holders", "slaves", "dmName", "dmUUID", "transport")


# -- reading the data channel ------------------------------------------------------------------------------

def sections(path):
    text = open(path, "rb").read().decode("utf-8", "replace").replace("\r", "")
    out = {}
    for m in re.finditer(r"^@@MT-BEGIN (\S+)\n(.*?)^@@MT-END \1 rc=(\d+)$", text, re.S | re.M):
        out[m.group(1)] = (m.group(2), int(m.group(3)))
    return out


def parse_sysfs(text):
    disks, host, cur = {}, {}, None
    for line in text.splitlines():
        key, _, val = line.partition(" ")
        if key == "disk":
            cur = disks.setdefault(val, {"name": val})
        elif key.startswith("dmi_"):
            host[key] = val
        elif cur is not None:
            cur[key] = val
    for d in disks.values():
        d["holders"] = d.get("holders", "").split()
        d["parts"] = d.get("parts", "").split()
        d["sizeBytes"] = int(d["size"]) * 512
    return disks, host


def decode_pg83(hexstr):
    """VPD page 0x83 -> [(type, value, association)]; values in mt-agent's convention (hex for binary,
    trimmed text for ASCII/UTF-8)."""
    b = bytes.fromhex(hexstr)
    if len(b) < 4:
        return []
    end = min(len(b), 4 + (b[2] << 8 | b[3]))
    out, i = [], 4
    while i + 4 <= end:
        code_set, assoc, typ, n = b[i] & 0x0F, (b[i + 1] >> 4) & 3, b[i + 1] & 0x0F, b[i + 3]
        v = b[i + 4:i + 4 + n]
        if code_set in (2, 3):
            value = v.decode("utf-8", "replace").strip("\0 \t")
        else:
            value = v.hex()
        out.append((DESIGNATOR_TYPES.get(typ, "reserved"), value, ASSOCIATIONS.get(assoc, "reserved")))
        i += 4 + n
    return out


def norm_value(typ, value):
    if value is None:
        return None
    if typ in NUMERIC_TYPES:
        try:
            return int(value, 16) if re.fullmatch(r"(0x)?[0-9a-fA-F]+", value) and len(value) > 4 else int(value)
        except ValueError:
            return value
    if typ in ("naa", "eui64", "uuid", "md5"):
        return value.lower().replace("-", "").replace(":", "").removeprefix("0x")
    return value.strip()


def designator_set(ds):
    return sorted((d["type"], str(norm_value(d["type"], d["value"])), d["association"]) for d in ds)


# -- assertions --------------------------------------------------------------------------------------------

class Checker:
    def __init__(self, scenario):
        self.scenario = scenario
        self.failures = []

    def fail(self, where, msg):
        self.failures.append("[%s] %s: %s" % (self.scenario, where, msg))

    def eq(self, where, field, expected, got):
        if expected is ANY:
            return
        ok = got in expected if isinstance(expected, tuple) else got == expected
        if not ok:
            self.fail(where, "%s: expected %s, got %s" % (
                field, " or ".join(map(repr, expected)) if isinstance(expected, tuple) else repr(expected), repr(got)))


def load_json(c, secs, name):
    if name not in secs:
        c.fail(name, "section missing from the guest output (did the VM finish?)")
        return None
    text, rc = secs[name]
    try:
        return json.loads(text), rc
    except ValueError as e:
        err = secs.get(name + ".stderr", ("", 0))[0].strip()
        c.fail(name, "not JSON (%s; exit %d); output starts %r; stderr: %s" % (e, rc, text[:200], err[:500]))
        return None


def match_disks(c, scen, sysfs):
    """Scenario disk -> [sysfs names]. Sizes are unique per LUN; paths to one LUN share an image."""
    out = {}
    for d in scen.disks:
        want = d.size_mib * MiB
        names = sorted(n for n, s in sysfs.items()
                       if s["sizeBytes"] == want and "dm_name" not in s and s.get("hidden") != "1")
        sharing = [o for o in scen.disks if (o.image or o.key) == (d.image or d.key)]
        if len(names) != len(sharing):
            c.fail("disk %s" % d.key, "expected %d block device(s) of %d MiB in the guest, sysfs has %s"
                   % (len(sharing), d.size_mib, names or "none"))
            continue
        out[d.key] = names
    return out


def check_inventory(c, scen, secs, section, sysfs, mapping):
    got = load_json(c, secs, section)
    if not got:
        return None
    inv, rc = got
    if rc != 0:
        c.fail(section, "mt-agent disks exited %d" % rc)
    host = inv.get("host") or {}
    c.eq(section + " host", "hypervisor", scen.expect_hypervisor, host.get("hypervisor"))
    disks = {d["name"]: d for d in inv.get("disks", [])}

    visible = {n for n, s in sysfs.items() if s.get("hidden") != "1"}
    if set(disks) != visible:
        c.fail(section, "disk names: sysfs has %s, mt-agent lists %s" % (sorted(visible), sorted(disks)))

    for spec in scen.disks:
        for name in mapping.get(spec.key, []):
            where = "%s disk %s (%s)" % (section, spec.key, name)
            d, s = disks.get(name), sysfs[name]
            if d is None:
                continue
            c.eq(where, "sizeBytes", spec.size_mib * MiB, d.get("sizeBytes"))
            c.eq(where, "logicalBlockSize", int(s["lbs"]), d.get("logicalBlockSize"))
            c.eq(where, "readOnly", False, d.get("readOnly"))
            c.eq(where, "devnode", "/dev/" + name, d.get("devnode"))
            c.eq(where, "serial", spec.expect_serial, d.get("serial"))
            c.eq(where, "model", spec.expect_model if spec.expect_model else (None, ""), d.get("model"))
            if spec.scsi:
                c.eq(where, "vendor", spec.expect_vendor, d.get("vendor"))
                c.eq(where, "driver", spec.expect_driver, d.get("driver"))
                c.eq(where, "hctl", s.get("hctl"), d.get("hctl"))
                if not spec.guest and s.get("hctl"):
                    t, lun = s["hctl"].split(":")[2:]
                    c.eq(where, "hctl target:lun", "%d:%d" % (spec.scsi_id, spec.lun), "%s:%s" % (t, lun))
                c.eq(where, "wwid", spec.expect_wwid, d.get("wwid"))
                mine = designator_set(d.get("designators") or [])
                raw = sorted((t, str(norm_value(t, v)), a) for t, v, a in decode_pg83(s.get("vpd_pg83", "")))
                if mine != raw:
                    c.fail(where, "designators: VPD page 0x83 in sysfs decodes to %s, mt-agent has %s" % (raw, mine))
                for t, v, a in spec.expect_designators:
                    if (t, str(norm_value(t, v)), a) not in mine:
                        c.fail(where, "designators: the VM was given %s %s (%s); mt-agent has %s" % (t, v, a, mine))
            else:
                c.eq(where, "hctl", None, d.get("hctl"))
                values = {str(norm_value(x["type"], x["value"])) for x in d.get("designators") or []}
                given = dict(spec.expect_nvme or {})
                for k, v in given.items():
                    if norm_value("uuid", v) not in values:
                        c.fail(where, "designators: the VM was given NVMe %s %s; mt-agent has %s"
                               % (k, v, d.get("designators")))
                for k in ("ns_eui", "ns_nguid", "ns_uuid"):
                    if k in s and norm_value("uuid", s[k]) not in values:
                        c.fail(where, "designators: sysfs %s is %s; mt-agent has %s" % (k[3:], s[k], d.get("designators")))
                if not given and not any(k in s for k in ("ns_eui", "ns_nguid", "ns_uuid")):
                    c.eq(where, "designators", [], d.get("designators"))
            if spec.fs:
                parts = d.get("partitions") or []
                c.eq(where, "partition names", s["parts"], [p.get("name") for p in parts])
                if parts:
                    p = parts[0]
                    pw = "%s partition %s" % (where, p.get("name"))
                    if section != "disks-root":  # a capture has no device contents for blkid to probe
                        c.eq(pw, "fsType", "ext4", p.get("fsType"))
                        c.eq(pw, "label", spec.fs.label, p.get("label"))
                        c.eq(pw, "uuid", spec.fs.uuid, p.get("uuid"))
                    c.eq(pw, "sizeBytes", spec.fs.size_mib * MiB, p.get("sizeBytes"))
                    c.eq(pw, "mountpoints", [spec.fs.mount] if spec.fs.mount else [], p.get("mountpoints"))
            c.eq(where, "holders", sorted(s["holders"]), sorted(d.get("holders") or []))
            c.eq(where, "role", spec.expect_role, d.get("role"))

    mp = scen.expect_multipath
    if mp:
        dms = [d for d in disks.values() if d.get("dmName") == mp["name"]]
        if len(dms) != 1:
            c.fail(section, "expected one disk with dmName %r, mt-agent has %d" % (mp["name"], len(dms)))
        else:
            dm = dms[0]
            where = "%s disk %s (%s)" % (section, mp["name"], dm["name"])
            c.eq(where, "dmUUID", mp["uuid"], dm.get("dmUUID"))
            paths = sorted({n for k in mp["paths"] for n in mapping.get(k, [])})
            c.eq(where, "slaves", paths, sorted(dm.get("slaves") or []))
            for k in mp["paths"]:
                for n in mapping.get(k, []):
                    c.eq("%s disk %s (%s)" % (section, k, n), "holders", [dm["name"]], disks.get(n, {}).get("holders"))
    return disks


def check_enable_uuid(c, scen, secs, section, mapping, disks):
    got = load_json(c, secs, section)
    if not got or disks is None:
        return
    out, rc = got
    checks = out.get("checks") or []
    failing = [x for x in checks if x.get("status") == "fail"]
    c.eq(section, "exit code", 1 if failing else 0, rc)
    if scen.expect_enable_uuid == "fail":
        want = sorted(n for k in scen.expect_enable_uuid_subjects for n in mapping.get(k, []))
        named = sorted(s.get("name") for x in failing for s in x.get("subjects") or [])
        if not failing:
            c.fail(section, "expected a failing check naming %s, got statuses %s"
                   % (want, [(x.get("id"), x.get("status")) for x in checks]))
        elif named != want:
            c.fail(section, "failing checks name %s, expected exactly %s (%s)"
                   % (named, want, ", ".join(scen.expect_enable_uuid_subjects)))
        c.eq(section, "exit code", 1, rc)
    else:
        for x in failing:
            c.fail(section, "check %s failed: %s" % (x.get("id"), x.get("message")))
        c.eq(section, "exit code", 0, rc)
    # Non-SCSI disks may only be named by a skipped (or passing) check.
    for spec in scen.disks:
        if spec.scsi:
            continue
        for n in mapping.get(spec.key, []):
            for x in checks:
                if n in [s.get("name") for s in x.get("subjects") or []] and x.get("status") not in ("skip", "pass"):
                    c.fail(section, "non-SCSI disk %s (%s) is a subject of check %s with status %s"
                           % (spec.key, n, x.get("id"), x.get("status")))


def compare_identities(c, what, a, b):
    if a is None or b is None:
        return
    if sorted(a) != sorted(b):
        c.fail(what, "disk names differ: %s vs %s" % (sorted(a), sorted(b)))
    for n in sorted(set(a) & set(b)):
        for f in IDENTITY_FIELDS:
            va, vb = a[n].get(f), b[n].get(f)
            if f == "designators":
                va, vb = designator_set(va or []), designator_set(vb or [])
            elif f in ("holders", "slaves"):
                va, vb = sorted(va or []), sorted(vb or [])
            if va != vb:
                c.fail("%s disk %s" % (what, n), "%s: %r vs %r" % (f, va, vb))


def check(scenario, data_log):
    scen = vm_scenarios.by_name(scenario)
    c = Checker(scenario)
    secs = sections(data_log)
    if "error" in secs:
        c.fail("guest", secs["error"][0].strip())
    if "done" not in secs:
        c.fail("guest", "the VM did not finish (no 'done' section; see console.log)")
    if "sysfs" not in secs:
        return c.failures
    sysfs, host = parse_sysfs(secs["sysfs"][0])
    mapping = match_disks(c, scen, sysfs)
    live = check_inventory(c, scen, secs, "disks", sysfs, mapping)
    check_enable_uuid(c, scen, secs, "check", mapping, live)
    if "disks-root" in secs or "collect-rt" in secs:
        if secs.get("collect-rt", ("", 1))[1] != 0:
            c.fail("collect", "mt-agent collect exited %d: %s" % (
                secs.get("collect-rt", ("", 1))[1], secs.get("collect-rt.stderr", ("", 0))[0].strip()[:500]))
        root = check_inventory(c, scen, secs, "disks-root", sysfs, mapping)
        check_enable_uuid(c, scen, secs, "check-root", mapping, root)
        compare_identities(c, "live vs collect+--root", live, root)
    if "disks-udev" in secs:
        udev = check_inventory(c, scen, secs, "disks-udev", sysfs, mapping)
        check_enable_uuid(c, scen, secs, "check-udev", mapping, udev)
        compare_identities(c, "without vs with udevd", live, udev)
    return c.failures


def summary(scenario, data_log):
    secs = sections(data_log)
    try:
        inv = json.loads(secs["disks"][0])
    except (KeyError, ValueError):
        return ["  (no inventory)"]
    lines = ["  hypervisor=%s" % (inv.get("host") or {}).get("hypervisor")]
    for d in inv.get("disks", []):
        ds = ",".join("%s:%s" % (x["type"], x["value"]) for x in d.get("designators") or [])
        lines.append("  %-8s hctl=%-9s driver=%-12s role=%-6s wwid=%-34s serial=%s designators=[%s]" % (
            d["name"], d.get("hctl"), d.get("driver"), d.get("role"), d.get("wwid"), d.get("serial"), ds))
    try:
        for x in json.loads(secs["check"][0]).get("checks", []):
            lines.append("  check %s: %s (%s)" % (x.get("id"), x.get("status"),
                                                 ",".join(s.get("name", "?") for s in x.get("subjects") or [])))
    except (KeyError, ValueError):
        pass
    return lines


def live_section(secs):
    return "disks-udev" if "disks-udev" in secs else "disks"


def fixture(scenario, data_log, dest, expected_json):
    scen = vm_scenarios.by_name(scenario)
    secs = sections(data_log)
    if "collect" not in secs:
        raise SystemExit("no 'collect' section in %s%s" % (
            data_log, ": " + secs["error"][0].strip() if "error" in secs else ""))
    blob = base64.b64decode("".join(secs["collect"][0].split()))
    if os.path.exists(dest):
        shutil.rmtree(dest)
    os.makedirs(dest)
    with tarfile.open(fileobj=io.BytesIO(blob), mode="r:gz") as tar:
        for m in tar.getmembers():
            if m.name.startswith("/") or ".." in m.name.split("/") or not (m.isfile() or m.isdir() or m.issym()):
                raise SystemExit("refusing capture member %r" % m.name)
        tar.extractall(dest)

    sysfs, _ = parse_sysfs(secs["sysfs"][0])
    c = Checker(scenario)
    mapping = match_disks(c, scen, sysfs)
    live = live_section(secs)
    check_name = "check-udev" if live == "disks-udev" else "check"
    given = []
    for d in scen.disks:
        g = {"key": d.key, "names": mapping.get(d.key, []), "sizeBytes": d.size_mib * MiB,
             "madeInGuest": d.guest}
        for k in ("serial", "vendor", "product", "scsi_id", "lun"):
            v = getattr(d, k)
            if v is not None and (d.scsi or k not in ("scsi_id", "lun")):
                g[k] = v
        if d.wwn is not None:
            g["wwn"] = "%016x" % d.wwn
        if d.eui64 is not None:
            g["eui64"] = "%016x" % d.eui64
        if d.expect_nvme:
            g["nvme"] = d.expect_nvme
        if d.expect_wwid:
            g["expectWWID"] = d.expect_wwid
        if d.expect_designators:
            g["expectDesignators"] = [{"type": t, "value": v, "association": a} for t, v, a in d.expect_designators]
        if d.fs:
            g["filesystem"] = {"type": "ext4", "label": d.fs.label, "uuid": d.fs.uuid, "mount": d.fs.mount}
        given.append(g)
    doc = {
        "scenario": scen.name,
        "title": scen.title,
        "note": "Written by Scripts/vm-fixtures: what the VM was given, and what mt-agent printed live in it "
                "(udevd running) when the capture in %s/ was taken." % scen.name,
        "given": given,
        "expectEnableUUID": {"status": scen.expect_enable_uuid,
                             "subjects": sorted(n for k in scen.expect_enable_uuid_subjects
                                                for n in mapping.get(k, []))},
        "liveDisks": json.loads(secs[live][0]),
        "liveCheckEnableUUID": json.loads(secs[check_name][0]),
        "liveCheckExitCode": secs[check_name][1],
    }
    with open(expected_json, "w") as f:
        json.dump(doc, f, indent=2, sort_keys=True)
        f.write("\n")
    return 0


def compare_root(scenario, data_log, host_json):
    c = Checker(scenario)
    secs = sections(data_log)
    live = json.loads(secs[live_section(secs)][0])
    try:
        host = json.load(open(host_json))
    except ValueError as e:
        c.fail("host disks --root", "not JSON: %s" % e)
        return c.failures
    c.eq("host disks --root", "hypervisor", (live.get("host") or {}).get("hypervisor"),
         (host.get("host") or {}).get("hypervisor"))
    compare_identities(c, "guest live vs host disks --root fixture",
                       {d["name"]: d for d in live.get("disks", [])}, {d["name"]: d for d in host.get("disks", [])})
    return c.failures


def main(argv):
    if len(argv) == 3 and argv[0] == "check":
        failures = check(argv[1], argv[2])
        for f in failures:
            print("FAIL " + f)
        return 1 if failures else 0
    if len(argv) == 3 and argv[0] == "summary":
        print("\n".join(summary(argv[1], argv[2])))
        return 0
    if len(argv) == 5 and argv[0] == "fixture":
        return fixture(*argv[1:])
    if len(argv) == 4 and argv[0] == "compare-root":
        failures = compare_root(*argv[1:])
        for f in failures:
            print("FAIL " + f)
        return 1 if failures else 0
    print(__doc__, file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
