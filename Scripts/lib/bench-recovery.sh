# `Scripts/bench recovery` (sourced by Scripts/bench, not run): mt-agent's recovery path against a
# baseline measured in the same run on the same devices. Uses Scripts/bench's log, die, need, build,
# attach, WORK and cleanup; its small Python parts are inline.
#
# (1) Rollback: a lab master target with a loop-device target (2 × N MiB, file on the real disk,
#     direct I/O) and a loop-backed ext4 retention volume; `send resync --full`, then `send replay`
#     of a trace `tag crash base`, N writes of 1 MiB at distinct offsets, `tag crash head`, so the
#     journal holds N MiB of undo after 'base'. serve is stopped, then `mt-agent failover --point
#     <base>` (direct mode) is timed and the target checked against the source's SHA-256 at 'base'.
#     Baseline: what the rollback must move at the least, with dd on the same devices —
#       (i)  dd target → a file on the retention volume, N MiB, conv=fsync   (the rollback's "saving":
#            it reads the head content of N MiB of the target and saves it on the retention volume)
#       (ii) dd that file → the target, oflag=direct conv=fsync              (the "undoing": it reads
#            N MiB of undo from the retention volume and writes them to the target)
#     (ii) writes back what (i) read, so the target is unchanged. Caches are dropped before each.
#     Goal: baseline s / rollback s >= 0.50. A failover forward to 'head' is timed for information.
# (2) Catalog: a second group with one small pair gets 10,000 crash tags through `send replay`
#     (10,000 recovery points), then `mt-agent points --group … --json` is timed (median of 5).
#
# All network traffic runs in a private network namespace (`ip netns`), so the port is free.
#
# Environment (besides Scripts/bench's):
#   BENCH_DIR             where the work directory goes (default /var/tmp; must not be tmpfs)
#   BENCH_RECOVERY_MIB    MiB of journaled changes to roll back (default 1024; the target is twice
#                         that, the retention volume 4 × that, at least 2 GiB)
#   BENCH_RECOVERY_POINTS recovery points in the catalog of (2) (default 10000)
#   BENCH_SEED            seed of the sources and traces (default 42)

REC_NETNS=""   # our network namespace (every process in it is ours)
REC_PIDS=()    # background processes this run started
REC_MOUNTS=()  # mount points this run mounted
REC_FIG=""     # key=value figures for the report
REC_PORT=9443
REC_SERVE=""

rec_cleanup() {
    local pid m i
    for pid in "${REC_PIDS[@]}"; do kill "$pid" 2>/dev/null; done
    for pid in "${REC_PIDS[@]}"; do
        # serve stops gracefully on SIGTERM but may take ~10 s to notice it
        for i in $(seq 150); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
        kill -9 "$pid" 2>/dev/null
    done
    REC_PIDS=()
    if [ -n "$REC_NETNS" ]; then
        for pid in $(ip netns pids "$REC_NETNS" 2>/dev/null); do kill "$pid" 2>/dev/null; done
        for i in $(seq 50); do [ -z "$(ip netns pids "$REC_NETNS" 2>/dev/null)" ] && break; sleep 0.1; done
        for pid in $(ip netns pids "$REC_NETNS" 2>/dev/null); do kill -9 "$pid" 2>/dev/null; done
        ip netns del "$REC_NETNS" 2>/dev/null || echo "bench: warning: could not delete network namespace $REC_NETNS" >&2
        REC_NETNS=""
    fi
    for m in "${REC_MOUNTS[@]}"; do
        umount "$m" 2>/dev/null || umount -l "$m" || echo "bench: warning: could not unmount $m" >&2
    done
    REC_MOUNTS=()
}

rec_fig() { echo "$1=$2" >>"$REC_FIG"; }
rec_now() { date +%s.%N; }
rec_sub() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.3f", b - a }'; }
rec_nsx() { ip netns exec "$REC_NETNS" "$@"; }
rec_json() {  # FILE KEY.PATH: one field of a JSON document (numbers for list indexes)
    "$PY" -c 'import json,sys
v = json.load(open(sys.argv[1]))
for k in sys.argv[2].split("."): v = v[int(k)] if isinstance(v, list) else v[k]
print(v)' "$1" "$2"
}

rec_drop_caches() {
    sync
    echo 3 >/proc/sys/vm/drop_caches || die "cannot drop caches (/proc/sys/vm/drop_caches)"
}

rec_sha() { sha256sum <"$1" | cut -d' ' -f1; }

rec_serve_tail() {
    echo "--- last lines of serve's log ($WORK/serve.log):" >&2
    tail -20 "$WORK/serve.log" >&2
}

# rec_send NAME MODE PAIR GROUP SOURCE TARGET [args...]: mt-agent send in our namespace against our
# serve; --json to NAME.json. Sets REC_WALL (s).
rec_send() {
    local name="$1" mode="$2" pair="$3" group="$4" src="$5" tgt="$6" t0 t1 spid wd rc=0
    shift 6
    t0="$(rec_now)"
    ip netns exec "$REC_NETNS" "$BIN" send "$mode" "$@" --source "$src" --to "127.0.0.1:$REC_PORT" \
        --fingerprint "$REC_FP" --passphrase-file "$WORK/pass" --pair "$pair" --group "$group" --target "$tgt" \
        --state-dir "$WORK/send-state" --json >"$WORK/$name.json" 2>"$WORK/$name.err" &
    spid=$!
    # send keeps reconnecting for up to an hour when the MT is gone: stop it if serve dies.
    (while kill -0 "$spid" 2>/dev/null; do
        kill -0 "$REC_SERVE" 2>/dev/null || { kill "$spid" 2>/dev/null; exit 0; }
        sleep 0.5
    done) &
    wd=$!
    REC_PIDS+=("$spid" "$wd")
    wait "$spid" || rc=$?
    t1="$(rec_now)"
    kill "$wd" 2>/dev/null
    wait "$wd" 2>/dev/null || true
    REC_PIDS=("${REC_PIDS[@]:0:${#REC_PIDS[@]}-2}")
    if [ "$rc" != 0 ]; then
        echo "--- mt-agent send $mode ($name) failed (exit $rc):" >&2
        tail -20 "$WORK/$name.err" >&2
        rec_serve_tail
        kill -0 "$REC_SERVE" 2>/dev/null || die "mt-agent serve died during $name"
        die "mt-agent send $mode failed"
    fi
    REC_WALL="$(rec_sub "$t0" "$t1")"
    kill -0 "$REC_SERVE" 2>/dev/null || { rec_serve_tail; die "mt-agent serve died during $name"; }
}

# Stops serve with SIGTERM and waits until it has exited.
rec_stop_serve() {
    local i
    kill -TERM "$REC_SERVE" 2>/dev/null || true
    for i in $(seq 600); do kill -0 "$REC_SERVE" 2>/dev/null || break; sleep 0.1; done
    kill -0 "$REC_SERVE" 2>/dev/null && { rec_serve_tail; die "mt-agent serve did not stop within 60 s of SIGTERM"; }
    wait "$REC_SERVE" 2>/dev/null || log "serve exited with status $?"
    local pid rest=()
    for pid in "${REC_PIDS[@]}"; do [ "$pid" = "$REC_SERVE" ] || rest+=("$pid"); done
    REC_PIDS=("${rest[@]}")
}

# rec_mt NAME CMD [args...]: a recovery command (direct mode: serve is stopped) with --json and our
# config; stdout to NAME.json. Sets REC_WALL (s).
rec_mt() {
    local name="$1" t0 t1
    shift
    t0="$(rec_now)"
    "$BIN" "$@" --json --config "$REC_CONF" >"$WORK/$name.json" 2>"$WORK/$name.err" \
        || { cat "$WORK/$name.err" >&2; die "mt-agent $* failed"; }
    t1="$(rec_now)"
    REC_WALL="$(rec_sub "$t0" "$t1")"
}

# rec_dd NAME dd-args...: dd with status=none; sets REC_WALL (s).
rec_dd() {
    local name="$1" t0 t1
    shift
    t0="$(rec_now)"
    dd "$@" status=none 2>"$WORK/$name.err" || { cat "$WORK/$name.err" >&2; die "dd $* failed"; }
    t1="$(rec_now)"
    REC_WALL="$(rec_sub "$t0" "$t1")"
}

# rec_point_id FILE NAME: the id of the point named NAME in a `points --json` document.
rec_point_id() {
    "$PY" -c 'import json,sys
ids = [p["id"] for g in json.load(open(sys.argv[1])) for p in g["points"] if p["name"] == sys.argv[2]]
if len(ids) != 1: sys.exit(f"{len(ids)} points named {sys.argv[2]!r} in {sys.argv[1]}")
print(ids[0])' "$1" "$2"
}

rec_point_count() { "$PY" -c 'import json,sys; print(sum(len(g["points"]) for g in json.load(open(sys.argv[1]))))' "$1"; }

bench_recovery() {
    local mib points seed tgt_mib ret_mib small_mib=64 need_bytes avail fstype fsdev load0 i
    while [ $# -gt 0 ]; do
        case "$1" in
            --keep) BENCH_KEEP=1; shift ;;
            *) usage ;;
        esac
    done
    [ "$(id -u)" = 0 ] || die "run as root (loop devices, mounts, a network namespace, drop_caches)"
    need swift dd sha256sum losetup mkfs.ext4 mount umount ip openssl awk "$PY"
    mib="${BENCH_RECOVERY_MIB:-1024}"
    points="${BENCH_RECOVERY_POINTS:-10000}"
    seed="${BENCH_SEED:-42}"
    case "$mib" in ''|*[!0-9]*) die "BENCH_RECOVERY_MIB=$mib: not a whole number of MiB" ;; esac
    case "$points" in ''|*[!0-9]*) die "BENCH_RECOVERY_POINTS=$points: not a number" ;; esac
    [ "$mib" -ge 16 ] || die "BENCH_RECOVERY_MIB must be at least 16"
    [ "$points" -ge 1 ] || die "BENCH_RECOVERY_POINTS must be at least 1"
    [ "$mib" -ge 1024 ] || log "warning: BENCH_RECOVERY_MIB=$mib is below the 1024 MiB the goal is meant for"
    tgt_mib=$((2 * mib))
    ret_mib=$((4 * mib))
    [ "$ret_mib" -ge 2048 ] || ret_mib=2048   # the reserve serve keeps free is 256 MiB × (pairs + 4)
    local start=$SECONDS
    load0="$(cut -d' ' -f1-3 /proc/loadavg)"

    WORK="$(mktemp -d "${BENCH_DIR:-/var/tmp}/mt-bench.XXXXXX")"
    trap cleanup EXIT
    trap 'exit 130' INT TERM HUP
    trap 'exit 141' PIPE
    REC_FIG="$WORK/figures"
    : >"$REC_FIG"

    fstype="$(stat -f -c %T "$WORK")"
    fsdev="$(df --output=source "$WORK" | tail -1)"
    case "$fstype" in tmpfs|ramfs) die "$WORK is on $fstype: set BENCH_DIR to a directory on a disk" ;; esac
    need_bytes=$(( (2 * tgt_mib + ret_mib + 2 * small_mib + 1024) << 20 ))
    avail="$(df --output=avail -B1 "$WORK" | tail -1)"
    [ "$avail" -ge "$need_bytes" ] || die "$WORK: $((avail >> 20)) MiB free, need $((need_bytes >> 20)) MiB"
    log "work directory $WORK on $fsdev ($fstype), $((avail >> 30)) GiB free"
    build

    REC_NETNS="mt-benchrec-$$"
    ip netns add "$REC_NETNS" || { REC_NETNS=""; die "ip netns add failed"; }
    rec_nsx ip link set lo up || die "cannot bring up lo in $REC_NETNS"

    # Images: sources (seeded pseudo-random), targets (written in full first, so no step pays for
    # allocating blocks in the backing file), the retention volume (ext4, own filesystem).
    log "writing the $tgt_mib MiB source and target images, the $ret_mib MiB retention volume"
    local src="$WORK/source.img" src2="$WORK/source2.img" tgt tgt2 ret
    openssl enc -aes-128-ctr -nosalt -pbkdf2 -pass "pass:mt-bench-$seed" </dev/zero 2>/dev/null \
        | head -c "$((tgt_mib << 20))" >"$src" || true
    [ "$(stat -c %s "$src")" = "$((tgt_mib << 20))" ] || die "could not write $src"
    openssl enc -aes-128-ctr -nosalt -pbkdf2 -pass "pass:mt-bench-$seed-2" </dev/zero 2>/dev/null \
        | head -c "$((small_mib << 20))" >"$src2" || true
    [ "$(stat -c %s "$src2")" = "$((small_mib << 20))" ] || die "could not write $src2"
    dd if=/dev/zero of="$WORK/target.img" bs=1M count="$tgt_mib" oflag=direct status=none || die "could not write target.img"
    dd if=/dev/zero of="$WORK/target2.img" bs=1M count="$small_mib" oflag=direct status=none || die "could not write target2.img"
    truncate -s "${ret_mib}M" "$WORK/retention.img"
    mkfs.ext4 -q -F -L mtbenchrec "$WORK/retention.img" || die "mkfs.ext4 failed"
    attach "$WORK/target.img" --direct-io=on
    tgt="$ATTACHED"
    attach "$WORK/target2.img" --direct-io=on
    tgt2="$ATTACHED"
    attach "$WORK/retention.img" --direct-io=on
    ret="$WORK/ret"
    mkdir -p "$ret"
    mount "$ATTACHED" "$ret" || die "cannot mount the retention volume $ATTACHED"
    REC_MOUNTS+=("$ret")
    local dio
    dio="$(cat "/sys/block/${tgt#/dev/}/loop/dio" 2>/dev/null || echo '?')"
    [ "$dio" = 1 ] || log "warning: $tgt did not get direct I/O (dio=$dio): writes may stop in the page cache"
    log "target $tgt (direct-io=$dio), points target $tgt2, retention volume on $ATTACHED at $ret"
    rec_fig mib "$mib"; rec_fig tgt_mib "$tgt_mib"; rec_fig ret_mib "$ret_mib"; rec_fig ret_dev "$ATTACHED"
    rec_fig target "$tgt"; rec_fig dio "$dio"; rec_fig fs "$fstype"; rec_fig dev "$fsdev"

    # The master target: a lab identity, the targets assigned to g1 and g2, serve in our namespace.
    echo "mt-bench-$seed-passphrase" >"$WORK/pass"
    chmod 600 "$WORK/pass"
    REC_CONF="$WORK/lab/mt-agent.conf"
    REC_FP="$("$BIN" lab init "$WORK/lab" --passphrase-file "$WORK/pass" --retention "$ret" \
        --port "$REC_PORT" --fast-kdf | tail -1)" || die "mt-agent lab init failed"
    [ -n "$REC_FP" ] || REC_FP="$(openssl x509 -in "$WORK/lab/cert.pem" -outform der | sha256sum | cut -d' ' -f1)"
    "$BIN" targets assign "$tgt" --group g1 --config "$REC_CONF" >"$WORK/assign.out" 2>&1 \
        || { cat "$WORK/assign.out" >&2; die "mt-agent targets assign $tgt failed"; }
    "$BIN" targets assign "$tgt2" --group g2 --config "$REC_CONF" >>"$WORK/assign.out" 2>&1 \
        || { cat "$WORK/assign.out" >&2; die "mt-agent targets assign $tgt2 failed"; }
    ip netns exec "$REC_NETNS" "$BIN" serve --config "$REC_CONF" --log-level notice 2>"$WORK/serve.log" &
    REC_SERVE=$!
    REC_PIDS+=("$REC_SERVE")
    for i in $(seq 600); do
        grep -q ready "$WORK/serve.log" && break
        kill -0 "$REC_SERVE" 2>/dev/null || { rec_serve_tail; die "mt-agent serve exited"; }
        sleep 0.1
    done
    grep -q ready "$WORK/serve.log" || { rec_serve_tail; die "mt-agent serve not ready after 60 s"; }
    log "serve ready (pid $REC_SERVE, fingerprint $REC_FP)"

    # (1) The pair of g1: in sync, then 'base', N MiB of distinct 1 MiB writes, 'head'.
    log "(1) mt-agent send resync --full of $tgt_mib MiB onto $tgt (pair p1, group g1)"
    rec_send resync1 resync p1 g1 "$src" "$tgt" --full
    rec_fig resync_wall "$REC_WALL"
    "$PY" - "$WORK/rollback.trace" "$tgt_mib" "$mib" "$seed" <<'EOF'
import random, sys
out, slots, writes, seed = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
MIB = 1 << 20
rng = random.Random(seed)
with open(out, "w") as f:
    f.write(f"# Scripts/bench recovery: {writes} 1 MiB writes at distinct offsets of {slots} MiB between two tags\n")
    f.write("tag crash base\n")
    for slot in rng.sample(range(slots), writes):
        f.write(f"write {slot * MIB} {MIB} {rng.getrandbits(63)}\n")
    f.write("tag crash head\n")
EOF
    log "(1) hashing the source at 'base'"
    local sha_base sha_head
    sha_base="$(rec_sha "$src")"
    log "(1) mt-agent send replay: 'tag crash base', $mib × 1 MiB at distinct offsets, 'tag crash head'"
    rec_send replay1 replay p1 g1 "$src" "$tgt" "$WORK/rollback.trace"
    rec_fig replay_wall "$REC_WALL"
    rec_fig replay_writes "$(rec_json "$WORK/replay1.json" stats.writes)"
    rec_fig replay_tags "$(rec_json "$WORK/replay1.json" stats.tags)"
    sha_head="$(rec_sha "$src")"
    rec_fig journal_bytes "$(du -sb "$ret/mt-agent/journal/p1" | cut -f1)"

    # (2) The pair of g2: in sync, then N tags (a 4 KiB write every 1000 tags) = N points.
    log "(2) mt-agent send resync --full of $small_mib MiB onto $tgt2 (pair p2, group g2)"
    rec_send resync2 resync p2 g2 "$src2" "$tgt2" --full
    "$PY" - "$WORK/points.trace" "$small_mib" "$points" "$seed" <<'EOF'
import random, sys
out, mib, tags, seed = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
rng = random.Random(seed + 1)
with open(out, "w") as f:
    f.write(f"# Scripts/bench recovery: {tags} crash tags, a 4 KiB write every 1000\n")
    for i in range(1, tags + 1):
        if i % 1000 == 1:
            f.write(f"write {rng.randrange(mib * 256) * 4096} 4096 {rng.getrandbits(63)}\n")
        f.write(f"tag crash t{i}\n")
EOF
    log "(2) mt-agent send replay: $points crash tags (pair p2, group g2)"
    rec_send replay2 replay p2 g2 "$src2" "$tgt2" "$WORK/points.trace"
    rec_fig build_wall "$REC_WALL"
    rec_fig build_seconds "$(rec_json "$WORK/replay2.json" seconds)"
    rec_fig build_tags "$(rec_json "$WORK/replay2.json" stats.tags)"
    rec_fig points_wanted "$points"

    log "stopping serve (SIGTERM)"
    rec_stop_serve
    rec_fig serve_warnings "$(grep -c ' warning ' "$WORK/serve.log" || true)"
    rec_fig serve_errors "$(grep -c -E ' (error|critical) ' "$WORK/serve.log" || true)"

    local base_id head_id
    rec_mt points1 points --group g1
    base_id="$(rec_point_id "$WORK/points1.json" base)" || die "no point 'base' in group g1"
    head_id="$(rec_point_id "$WORK/points1.json" head)" || die "no point 'head' in group g1"
    rec_fig base_id "$base_id"; rec_fig head_id "$head_id"

    # (1) Baseline: the least the rollback must move, with dd on the same devices. (ii) writes back
    # what (i) read, so the target keeps its content.
    log "(1) baseline (i): dd $mib MiB of $tgt to a file on the retention volume, conv=fsync"
    rec_drop_caches
    rec_dd base_save if="$tgt" of="$ret/baseline.bin" bs=1M count="$mib" conv=fsync
    rec_fig base_save "$REC_WALL"
    log "(1) baseline (ii): dd that file back to $tgt, oflag=direct conv=fsync"
    rec_drop_caches
    rec_dd base_write if="$ret/baseline.bin" of="$tgt" bs=1M count="$mib" oflag=direct conv=fsync
    rec_fig base_write "$REC_WALL"
    rm -f "$ret/baseline.bin"

    log "(1) mt-agent failover --group g1 --point $base_id (direct, serve stopped)"
    rec_drop_caches
    rec_mt failover1 failover --group g1 --point "$base_id" --yes
    rec_fig fo_wall "$REC_WALL"
    rec_fig fo_seconds "$(rec_json "$WORK/failover1.json" seconds)"
    rec_fig fo_undo "$(rec_json "$WORK/failover1.json" pairs.0.stats.undoBytes)"
    rec_fig fo_records "$(rec_json "$WORK/failover1.json" pairs.0.stats.undoRecords)"
    rec_fig fo_saved "$(rec_json "$WORK/failover1.json" pairs.0.stats.savedBytes)"
    rec_fig fo_forward "$(rec_json "$WORK/failover1.json" pairs.0.stats.forwardBytes)"
    rec_fig saved_bytes "$(du -sb "$ret/mt-agent/failover/p1" | cut -f1)"
    rec_drop_caches
    rec_fig chk_base "$([ "$(rec_sha "$tgt")" = "$sha_base" ] && echo same || echo DIFFERENT)"

    log "(1) mt-agent failover --group g1 --point $head_id (forward, from the saved store)"
    rec_drop_caches
    rec_mt failover2 failover --group g1 --point "$head_id" --yes
    rec_fig fw_wall "$REC_WALL"
    rec_fig fw_seconds "$(rec_json "$WORK/failover2.json" seconds)"
    rec_fig fw_undo "$(rec_json "$WORK/failover2.json" pairs.0.stats.undoBytes)"
    rec_fig fw_saved "$(rec_json "$WORK/failover2.json" pairs.0.stats.savedBytes)"
    rec_fig fw_forward "$(rec_json "$WORK/failover2.json" pairs.0.stats.forwardBytes)"
    rec_drop_caches
    rec_fig chk_head "$([ "$(rec_sha "$tgt")" = "$sha_head" ] && echo same || echo DIFFERENT)"

    # (2) points --json on the catalog of N points: cold (caches dropped) and warm, 5 runs each.
    log "(2) mt-agent points --group g2 --json, 5 runs with caches dropped, 5 warm"
    local cold=() warm=()
    for i in 1 2 3 4 5; do
        rec_drop_caches
        rec_mt "points2-cold$i" points --group g2
        cold+=("$REC_WALL")
    done
    for i in 1 2 3 4 5; do
        rec_mt "points2-warm$i" points --group g2
        warm+=("$REC_WALL")
    done
    rec_fig points_cold "${cold[*]}"
    rec_fig points_warm "${warm[*]}"
    rec_fig points_count "$(rec_point_count "$WORK/points2-cold1.json")"
    rec_fig points_count_all "$(for i in 1 2 3 4 5; do rec_point_count "$WORK/points2-cold$i.json"; rec_point_count "$WORK/points2-warm$i.json"; done | sort -u | tr '\n' ' ')"
    rec_fig points_bytes "$(stat -c %s "$WORK/points2-cold1.json")"
    rec_fig catalog_bytes "$(du -cb "$ret/mt-agent/catalog.sqlite"* | tail -1 | cut -f1)"

    "$PY" - "$REC_FIG" <<'EOF'
import statistics, sys
f = {}
for line in open(sys.argv[1]):
    k, _, v = line.rstrip("\n").partition("=")
    if k:
        f[k] = v
num = lambda k: float(f[k])
MIB = 1 << 20
mib = int(f["mib"])
base = num("base_save") + num("base_write")
fo = num("fo_wall")
ratio = base / fo
ok = ratio >= 0.5
# Bytes the rollback moves at the least: mib MiB read from the target + saved, mib MiB of undo read + written.
out = ["", f"== recovery (rollback of {mib} MiB; target {f['target']} (loop, direct-io={f['dio']}, {f['tgt_mib']} MiB) "
           f"on {f['fs']} {f['dev']}; retention volume ext4 on {f['ret_dev']}, {f['ret_mib']} MiB) =="]
out.append(f"recovery (1) rollback of {mib} MiB: {fo:.2f} s = {mib / fo:.1f} MiB/s, baseline {base:.2f} s = "
           f"{mib / base:.1f} MiB/s (dd target -> retention file + dd file -> target), ratio {ratio:.2f} "
           f"(goal >= 0.50 = baseline s / rollback s): {'PASS' if ok else 'MISS'}")
cold = [float(x) for x in f["points_cold"].split()]
warm = [float(x) for x in f["points_warm"].split()]
count_ok = f["points_count_all"].split() == [f["points_wanted"]]
out.append(f"recovery (2) points --group g2 --json on {int(f['points_wanted'])} points: {statistics.median(cold):.3f} s median "
           f"of 5 (caches dropped), {statistics.median(warm):.3f} s warm; returned {f['points_count']} points "
           f"({'right' if count_ok else 'WRONG: runs returned ' + f['points_count_all'].strip()}; no goal, information)")
out.append("")
out.append("raw figures:")
raw = [
    f"(1) setup: send resync --full of {f['tgt_mib']} MiB {num('resync_wall'):.2f} s; send replay of 'base', "
    f"{f['replay_writes']} x 1 MiB at distinct offsets, 'head' ({f['replay_tags']} tags) {num('replay_wall'):.2f} s wall; "
    f"journal of p1 {num('journal_bytes') / MIB:.1f} MiB",
    f"(1) baseline (i) dd if=target of=<retention>/baseline.bin bs=1M count={mib} conv=fsync: {num('base_save'):.2f} s "
    f"({mib / num('base_save'):.1f} MiB/s); (ii) dd if=baseline.bin of=target bs=1M oflag=direct conv=fsync: "
    f"{num('base_write'):.2f} s ({mib / num('base_write'):.1f} MiB/s); caches dropped before each; sum {base:.2f} s",
    f"(1) failover --point {f['base_id']} ('base'): {fo:.2f} s wall, {num('fo_seconds'):.2f} s (--json seconds); "
    f"undoBytes {int(num('fo_undo'))} ({num('fo_undo') / MIB:.1f} MiB, {f['fo_records']} records), savedBytes "
    f"{int(num('fo_saved'))} ({num('fo_saved') / MIB:.1f} MiB), forwardBytes {int(num('fo_forward'))}; "
    f"saved store {num('saved_bytes') / MIB:.1f} MiB",
    f"(1) failover --point {f['head_id']} ('head', forward from the saved store): {num('fw_wall'):.2f} s wall "
    f"({mib / num('fw_wall'):.1f} MiB/s), {num('fw_seconds'):.2f} s (--json); forwardBytes {int(num('fw_forward'))}, "
    f"savedBytes {int(num('fw_saved'))}, undoBytes {int(num('fw_undo'))} (information, no goal)",
    f"(2) building {f['points_wanted']} points: send replay of {f['points_wanted']} 'tag crash tN' (a 4 KiB write every "
    f"1000) {num('build_wall'):.1f} s wall, {num('build_seconds'):.1f} s (--json), {f['build_tags']} tags, "
    f"{int(f['points_wanted']) / num('build_wall'):.0f} points/s; catalog {num('catalog_bytes') / MIB:.1f} MiB (with -wal)",
    f"(2) points --json runs (s): caches dropped {', '.join(f'{x:.3f}' for x in cold)}; warm "
    f"{', '.join(f'{x:.3f}' for x in warm)}; output {num('points_bytes') / 1024:.0f} KiB",
    f"checks: target == source at 'base' (SHA-256) after failover to 'base': {f['chk_base']}; target == source at "
    f"'head' after failover to 'head': {f['chk_head']}; undoBytes == {mib} MiB: "
    f"{'yes' if int(num('fo_undo')) == mib * MIB else 'NO'}; savedBytes == {mib} MiB: "
    f"{'yes' if int(num('fo_saved')) == mib * MIB else 'NO'}",
    f"serve's log: {f['serve_warnings']} warning and {f['serve_errors']} error lines (notice level)",
]
if num("build_wall") > 120:
    raw.append(f"note: building {f['points_wanted']} points took {num('build_wall'):.0f} s, more than 2 minutes")
out += ["  " + r for r in raw]
out.append("")
checks = f["chk_base"] == "same" and f["chk_head"] == "same" and count_ok
out.append(f"summary: (1) rollback {'PASS' if ok else 'MISS'} (ratio {ratio:.2f}); checks {'all right' if checks else 'FAILED'}")
print("\n".join(out))
EOF
    if grep -q -E ' (warning|error|critical) ' "$WORK/serve.log"; then
        echo "serve's warnings and errors (first 10):"
        grep -E ' (warning|error|critical) ' "$WORK/serve.log" | head -10 | sed 's/^/  /'
    fi
    echo "(took $((SECONDS - start)) s; load average $load0 at the start, $(cut -d' ' -f1-3 /proc/loadavg) at the end;" \
         "$(nproc) CPUs; network in namespace $REC_NETNS)"
}
