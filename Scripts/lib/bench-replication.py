#!/usr/bin/env python3
"""Helpers of `Scripts/bench replication` (Scripts/lib/bench-replication.sh), one per subcommand:

  trace OUT SIZE WRITES TAG_EVERY SEED
                                      a replay trace of WRITES random 1 MiB-aligned 1 MiB writes over
                                      [0, SIZE), with 'tag crash' after every TAG_EVERY writes (and one
                                      at the end)
  mutate FILE PERCENT BLOCK SEED      overwrite PERCENT % of FILE's BLOCK-byte blocks (distinct, chosen
                                      at random with SEED) with new random bytes, in place, fsynced;
                                      prints how many blocks and bytes changed
  rss PID OUT                         sample /proc/PID/status VmRSS every 100 ms until PID exits or
                                      SIGTERM; OUT holds the largest value seen (KiB), rewritten on
                                      every new maximum
  lo-bytes                            bytes sent on 'lo' in this network namespace (/proc/net/dev)
  json FILE KEY.PATH...               print fields of a JSON file, one per line ('stats.bytesSent')
  fio-bw FILE                         write bandwidth (bytes/s) and runtime (s) of a fio JSON report
  report FIGURES                      the result table, from the key=value lines the script collected
"""
import json
import os
import random
import signal
import sys
import time

MIB = 1 << 20


def trace(out, size, writes, tag_every, seed):
    rng = random.Random(int(seed))
    slots = int(size) // MIB
    # tag_every 0: no tags in the trace (the sender's --tag-interval adds them), but a final one.
    writes, tag_every = int(writes), int(tag_every)
    tags = 0
    with open(out, "w") as f:
        f.write(f"# Scripts/bench replication: {writes} random 1 MiB writes over {slots} MiB, "
                f"a crash tag every {tag_every or 'second (sender)'} writes (seed {seed})\n")
        for i in range(writes):
            f.write(f"write {rng.randrange(slots) * MIB} {MIB} {rng.getrandbits(63)}\n")
            if tag_every and (i + 1) % tag_every == 0:
                tags += 1
                f.write(f"tag crash bench-{tags}\n")
        if not tag_every or writes % tag_every:
            tags += 1
            f.write(f"tag crash bench-{tags}\n")
    print(tags)


def mutate(path, percent, block, seed):
    rng = random.Random(int(seed))
    block = int(block)
    size = os.path.getsize(path)
    blocks = size // block
    count = max(1, round(blocks * float(percent) / 100))
    chosen = sorted(rng.sample(range(blocks), count))
    fd = os.open(path, os.O_WRONLY)
    try:
        for b in chosen:
            os.pwrite(fd, rng.randbytes(block), b * block)
        os.fsync(fd)
    finally:
        os.close(fd)
    print(count, count * block)


def rss(pid, out):
    stop = []
    signal.signal(signal.SIGTERM, lambda *_: stop.append(1))
    best = 0
    while not stop:
        try:
            with open(f"/proc/{pid}/status") as f:
                for line in f:
                    if line.startswith("VmRSS:"):
                        kib = int(line.split()[1])
                        if kib > best:
                            best = kib
                            with open(out + ".tmp", "w") as o:
                                o.write(f"{best}\n")
                            os.replace(out + ".tmp", out)
                        break
        except (FileNotFoundError, ProcessLookupError):
            break
        time.sleep(0.1)


def lo_bytes():
    with open("/proc/net/dev") as f:
        for line in f:
            name, _, rest = line.partition(":")
            if name.strip() == "lo":
                # receive: bytes packets errs drop fifo frame compressed multicast; transmit: bytes ...
                print(int(rest.split()[8]))
                return
    sys.exit("no lo in /proc/net/dev")


def get_json(path, keys):
    doc = json.load(open(path))
    for key in keys:
        v = doc
        for part in key.split("."):
            v = v[part]
        print(v)


def fio_bw(path):
    text = open(path).read()
    doc = json.loads(text[text.index("{"):])  # fio may print notes before the JSON
    w = doc["jobs"][0]["write"]
    print(w["bw_bytes"], w["runtime"] / 1000)


def fio_jobs(path):
    """Seconds until the last of a fio run's concurrent jobs ended, and each job's MiB/s."""
    text = open(path).read()
    doc = json.loads(text[text.index("{"):])
    seconds = max(j["job_runtime"] for j in doc["jobs"]) / 1000
    rates = [f'{j["jobname"]} {(j["read"]["bw_bytes"] + j["write"]["bw_bytes"]) / MIB:.0f}' for j in doc["jobs"]]
    print(f"{seconds:.3f}", ", ".join(rates))


def report(path):
    f = {}
    for line in open(path):
        k, _, v = line.rstrip("\n").partition("=")
        if k:
            f[k] = v

    def num(k):
        return float(f[k])

    mib = lambda b: b / MIB
    lines, verdicts = [], []

    def line(name, value, unit, base, bunit, ratio, goal_text, ok, note=""):
        v = "PASS" if ok else "MISS"
        verdicts.append((name, v))
        lines.append(f"replication {name}: {value} {unit}, baseline {base} {bunit}, ratio {ratio:.2f} "
                     f"(goal {goal_text}): {v}" + (f"  [{note}]" if note else ""))

    size = int(f["size"])
    a, b = num("a_mibps"), num("b_mibps")
    c = num("c_bytes") / MIB / num("c_seconds")
    line("(c) full resync", f"{c:.1f}", "MiB/s", f"{b:.1f}", "MiB/s (b: nc | dd oflag=direct)", c / b,
         ">= 0.80", c / b >= 0.8, f"{mib(num('c_bytes')):.0f} MiB in {num('c_seconds'):.2f} s, TLS")
    d = num("d_bytes") / MIB / num("d_seconds")
    line("(d) overwrites + tags", f"{d:.1f}", "MiB/s", f"{a:.1f}", "MiB/s (a: fio O_DIRECT seq 1 MiB)", d / a,
         ">= 0.40", d / a >= 0.4,
         f"{mib(num('d_bytes')):.0f} MiB / {num('d_seconds'):.2f} s of the --json summary, {f['d_tags']} tags")
    # Not a goal of the issue: how close (d) comes to the disk work it cannot avoid.
    ceiling = mib(size) / num("a2_seconds")
    lines.append(f"replication (d) against its disk work: {d:.1f} MiB/s, fio doing the same I/O (a') "
                 f"{ceiling:.1f} MiB/s, ratio {d / ceiling:.2f} (not a goal; (a')/(a) = {ceiling / a:.2f} "
                 f"is the most (d)/(a) this disk allows)")
    et, rt = num("e_mt_wall"), num("e_rs_wall")
    line("(e) differential resync time", f"{et:.2f}", "s", f"{rt:.2f}", "s (rsync daemon)", rt / et,
         ">= 3.00 = rsync s / mt-agent s", rt / et >= 3.0)
    eb, rb = num("e_mt_lo"), num("e_rs_lo")
    line("(e) differential resync wire", f"{mib(eb):.1f}", "MiB", f"{mib(rb):.1f}", "MiB (rsync daemon)", eb / rb,
         "< 1.00 = mt-agent bytes / rsync bytes", eb < rb, "bytes on 'lo' of a private network namespace")
    hwm = num("f_hwm_kib") / 1024
    line("(f) serve peak RSS during (d)", f"{hwm:.1f}", "MiB", "256", "MiB (limit)", hwm / 256, "<= 1.00",
         hwm <= 256, f"VmHWM after a reset before (d); sampled VmRSS max {num('f_rss_kib') / 1024:.1f} MiB")

    out = []
    out.append("")
    out.append(f"== replication (size {size} bytes = {mib(size):.0f} MiB; target {f['target']} "
               f"(loop, direct-io={f['dio']}) on {f['fs']} {f['dev']}) ==")
    out += lines
    out.append("")
    out.append("raw figures:")
    raw = [
        f"(a) fio --rw=write --bs=1M --direct=1 --ioengine=psync --end_fsync=1 on {f['target']}: "
        f"{a:.1f} MiB/s ({mib(size):.0f} MiB, fio runtime {num('a_runtime'):.2f} s, wall {num('a_wall'):.2f} s)",
        f"(a') fio, (d)'s disk work for {mib(size):.0f} MiB of writes as three concurrent psync jobs (old content: "
        f"random 1 MiB O_DIRECT reads of the target; journal: sequential 4 MiB O_DIRECT writes of a file on the "
        f"retention volume, fsync at the end; new content: random 1 MiB O_DIRECT writes of the target, fsync at "
        f"the end): {num('a2_seconds'):.2f} s until the last ended; MiB/s per job: {f['a2_jobs']}",
        f"(b) nc -N < source | nc -l | dd of={f['target']} oflag=direct bs=1M iflag=fullblock conv=fsync: "
        f"{b:.1f} MiB/s ({num('b_wall'):.2f} s wall, {mib(num('b_lo')):.1f} MiB on lo)",
        f"(c) send resync --full, pair {f['pair']}: {num('c_seconds'):.2f} s (--json), {num('c_wall'):.2f} s wall, "
        f"bytesSent {int(num('c_sent'))}, writes {f['c_writes']}, {mib(num('c_lo')):.1f} MiB on lo "
        f"(overhead {100 * (num('c_lo') / num('c_bytes') - 1):.1f} % over the payload)",
        f"(c') differential resync of the in-sync pair: {num('v_seconds'):.2f} s (--json), hashedChunks "
        f"{f['v_hashed']}, differingChunks {f['v_differing']} (expected 0), bytesSent {f['v_sent']}, "
        f"{mib(num('v_lo')):.1f} MiB on lo",
        f"(d) send replay: {f['d_writes_trace']} x 1 MiB random writes, {f['d_tags_trace']} crash tag(s) (one every "
        f"{f['d_tag_every']} writes: {f['d_tag_why']}); --json: seconds {num('d_seconds'):.2f}, bytesSent "
        f"{int(num('d_bytes'))}, writes {f['d_writes']}, tags {f['d_tags']}, reconnects {f['d_reconnects']}, "
        f"hashedChunks {f['d_hashed']}, differingChunks {f['d_differing']}; wall {num('d_wall'):.2f} s; "
        f"journal on the retention volume {mib(num('d_journal')):.0f} MiB",
        f"(e) change: {f['e_blocks']} of {size // 4096} 4 KiB blocks ({mib(num('e_changed')):.1f} MiB, 1 %, seeded)",
        f"(e) mt-agent send resync (differential): {et:.2f} s wall, {num('e_mt_seconds'):.2f} s (--json), "
        f"bytesSent {int(num('e_mt_sent'))} + hashes {f['e_mt_hashed']} x 32 = "
        f"{mib(num('e_mt_sent') + 32 * num('e_mt_hashed')):.1f} MiB of payload, differingChunks "
        f"{f['e_mt_differing']}; {int(eb)} bytes on lo (TCP/IP headers, TLS, protocol included)",
        f"(e) rsync --inplace --no-whole-file --ignore-times to rsync://127.0.0.1/… (daemon on loopback): "
        f"{rt:.2f} s wall (+ {num('e_rs_sync'):.2f} s for a sync afterwards, not counted), rsync --stats: "
        f"sent {f['e_rs_sent']} bytes, received {f['e_rs_recv']} bytes, literal data {f['e_rs_literal']} bytes; "
        f"{int(rb)} bytes on lo",
        "(e) asymmetry: rsync cannot write into a block device, so its destination is a regular FILE holding "
        "the old image on the same disk, written through the page cache (no fsync: the sync after it is "
        "reported, not counted); mt-agent writes the loop device itself and waits until the MT has made the "
        "writes and their undo journal durable",
        f"(f) serve VmHWM after (d) {num('f_hwm_kib') / 1024:.1f} MiB (reset with clear_refs 5 just before (d)); "
        f"VmHWM over the whole run before the reset {num('f_hwm_before_kib') / 1024:.1f} MiB",
        f"checks: target == source after (c): {f['chk_c']}; after (d): {f['chk_d']}; after (e): {f['chk_e']}; "
        f"rsync copy == source after (e): {f['chk_rs']}",
        f"serve's log: {f['serve_warnings']} warning and {f['serve_errors']} error lines (notice level)",
    ]
    if int(f["d_tags"]) < 3:
        raw.append(f"note: (d) sent only {f['d_tags']} tag(s); BENCH_REPLAY_MIB (mind the retention volume: "
                   f"size + 2 GiB) makes the replay longer")
    out += ["  " + r for r in raw]
    passed = sum(1 for _, v in verdicts if v == "PASS")
    out.append("")
    out.append(f"summary: {passed} of {len(verdicts)} goals met: " + "; ".join(f"{n} {v}" for n, v in verdicts))
    print("\n".join(out))


def main():
    cmd, args = sys.argv[1], sys.argv[2:]
    {"trace": trace, "mutate": mutate, "rss": rss, "lo-bytes": lo_bytes,
     "json": lambda p, *k: get_json(p, k), "fio-bw": fio_bw, "fio-jobs": fio_jobs, "report": report}[cmd](*args)


if __name__ == "__main__":
    main()
