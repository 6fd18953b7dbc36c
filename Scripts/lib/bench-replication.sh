# `Scripts/bench replication` (sourced by Scripts/bench, not run): mt-agent's replication path
# against baselines measured in the same run, on one loop-device target backed by a file on the
# real disk. Uses Scripts/bench's log, die, need, build, attach, WORK and cleanup; its own helpers
# are in Scripts/lib/bench-replication.py.
#
# All network traffic runs in a private network namespace (`ip netns`), so the 'lo' counters of
# /proc/net/dev there count only this benchmark's bytes (TCP/IP headers, TLS and protocol included).
#
# Environment (besides Scripts/bench's):
#   BENCH_DIR          where the work directory goes (default /var/tmp; must not be tmpfs)
#   BENCH_REPLAY_MIB   1 MiB writes in (d)'s trace (default: the size in MiB, one device's worth)
#   BENCH_TAG_EVERY    writes between (d)'s crash tags (default: round((a) in MiB/s), a tag a second
#                      at the raw device's rate)
#   BENCH_SEED         seed of the source, the trace and the 1 % change (default 42)

RB_PY="$REPO/Scripts/lib/bench-replication.py"
RB_NETNS=""    # our network namespace (every process in it is ours)
RB_PIDS=()     # background processes this run started
RB_MOUNTS=()   # mount points this run mounted
RB_FIG=""      # key=value figures for the report
RB_MT_PORT=9443 RB_NC_PORT=9100 RB_RSYNC_PORT=8730   # free: the namespace has no other listeners

rb_cleanup() {
    local pid m i
    for pid in "${RB_PIDS[@]}"; do kill "$pid" 2>/dev/null; done
    for pid in "${RB_PIDS[@]}"; do
        # serve stops gracefully on SIGTERM but may take ~10 s to notice it
        for i in $(seq 150); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
        kill -9 "$pid" 2>/dev/null
    done
    RB_PIDS=()
    if [ -n "$RB_NETNS" ]; then
        # Whatever still runs in our namespace was started by this run (e.g. nc under a pipeline's sh).
        for pid in $(ip netns pids "$RB_NETNS" 2>/dev/null); do kill "$pid" 2>/dev/null; done
        for i in $(seq 50); do [ -z "$(ip netns pids "$RB_NETNS" 2>/dev/null)" ] && break; sleep 0.1; done
        for pid in $(ip netns pids "$RB_NETNS" 2>/dev/null); do kill -9 "$pid" 2>/dev/null; done
        ip netns del "$RB_NETNS" 2>/dev/null || echo "bench: warning: could not delete network namespace $RB_NETNS" >&2
        RB_NETNS=""
    fi
    for m in "${RB_MOUNTS[@]}"; do
        umount "$m" 2>/dev/null || umount -l "$m" || echo "bench: warning: could not unmount $m" >&2
    done
    RB_MOUNTS=()
}

rb_fig() { echo "$1=$2" >>"$RB_FIG"; }
rb_now() { date +%s.%N; }
rb_sub() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.3f", b - a }'; }
rb_nsx() { ip netns exec "$RB_NETNS" "$@"; }
rb_lo() { rb_nsx "$PY" "$RB_PY" lo-bytes; }
rb_json() { "$PY" "$RB_PY" json "$@"; }

# Empties the page cache so every scenario reads its source and target from the disk.
rb_drop_caches() {
    sync
    echo 3 >/proc/sys/vm/drop_caches || die "cannot drop caches (/proc/sys/vm/drop_caches)"
}

rb_wait_listen() {  # port what
    local i
    for i in $(seq 300); do
        [ -n "$(rb_nsx ss -Hltn "sport = :$1")" ] && return 0
        sleep 0.1
    done
    die "$2 is not listening on port $1 after 30 s"
}

# cmp of two files/devices; prints "same" or what cmp said.
rb_same() {
    local out
    if out="$(cmp "$1" "$2" 2>&1)"; then echo same; else echo "DIFFERENT (${out:-cmp failed})"; fi
}

rb_serve_tail() {
    echo "--- last lines of serve's log ($WORK/serve.log):" >&2
    tail -20 "$WORK/serve.log" >&2
}

# rb_send NAME MODE [args...]: mt-agent send in our namespace against our serve; --json to NAME.json.
# Sets RB_WALL (s) and RB_LOB (bytes on lo).
rb_send() {
    local name="$1" mode="$2" t0 t1 l0 l1
    shift 2
    local spid wd rc=0
    l0="$(rb_lo)"
    t0="$(rb_now)"
    ip netns exec "$RB_NETNS" "$BIN" send "$mode" "$@" --source "$RB_SRC" --to "127.0.0.1:$RB_MT_PORT" \
        --fingerprint "$RB_FP" --passphrase-file "$WORK/pass" --pair "$RB_PAIR" --group g1 --target "$RB_TGT" \
        --state-dir "$WORK/send-state" --json >"$WORK/$name.json" 2>"$WORK/$name.err" &
    spid=$!
    # send keeps reconnecting for up to an hour when the MT is gone: stop it if serve dies.
    (while kill -0 "$spid" 2>/dev/null; do
        kill -0 "$RB_SERVE" 2>/dev/null || { kill "$spid" 2>/dev/null; exit 0; }
        sleep 0.5
    done) &
    wd=$!
    RB_PIDS+=("$spid" "$wd")
    wait "$spid" || rc=$?
    t1="$(rb_now)"
    kill "$wd" 2>/dev/null
    wait "$wd" 2>/dev/null || true
    RB_PIDS=("${RB_PIDS[@]:0:${#RB_PIDS[@]}-2}")
    if [ "$rc" != 0 ]; then
        echo "--- mt-agent send $mode ($name) failed (exit $rc):" >&2
        tail -20 "$WORK/$name.err" >&2
        rb_serve_tail
        kill -0 "$RB_SERVE" 2>/dev/null || die "mt-agent serve died during $name"
        die "mt-agent send $mode failed"
    fi
    l1="$(rb_lo)"
    RB_WALL="$(rb_sub "$t0" "$t1")"
    RB_LOB=$((l1 - l0))
    kill -0 "$RB_SERVE" 2>/dev/null || { rb_serve_tail; die "mt-agent serve died during $name"; }
}

bench_replication() {
    local size_arg=2G size mib need_bytes avail fstype fsdev load0
    while [ $# -gt 0 ]; do
        case "$1" in
            --size) [ $# -ge 2 ] || usage; size_arg="$2"; shift 2 ;;
            --size=*) size_arg="${1#--size=}"; shift ;;
            --keep) BENCH_KEEP=1; shift ;;
            *) usage ;;
        esac
    done
    [ "$(id -u)" = 0 ] || die "run as root (loop devices, mounts, a network namespace, drop_caches)"
    need swift fio rsync nc dd cmp losetup mkfs.ext4 mount umount ip ss openssl numfmt awk "$PY"
    size="$(numfmt --from=iec "$size_arg" 2>/dev/null)" || die "--size $size_arg: not a size (e.g. 2G, 512M)"
    [ $((size % 1048576)) = 0 ] && [ "$size" -ge $((64 << 20)) ] || die "--size must be a whole number of MiB, at least 64M"
    mib=$((size >> 20))
    [ "$size" -ge $((2 << 30)) ] || log "warning: --size $size_arg is below the 2 GiB the goals are meant for"
    local start=$SECONDS seed="${BENCH_SEED:-42}" replay_mib="${BENCH_REPLAY_MIB:-$mib}"
    load0="$(cut -d' ' -f1-3 /proc/loadavg)"

    WORK="$(mktemp -d "${BENCH_DIR:-/var/tmp}/mt-bench.XXXXXX")"
    trap cleanup EXIT
    trap 'exit 130' INT TERM HUP
    trap 'exit 141' PIPE
    RB_FIG="$WORK/figures"
    : >"$RB_FIG"

    # The images must be on the real disk: not tmpfs (memory), and with room for source, target,
    # rsync's copy and the retention volume's journal.
    fstype="$(stat -f -c %T "$WORK")"
    fsdev="$(df --output=source "$WORK" | tail -1)"
    case "$fstype" in tmpfs|ramfs) die "$WORK is on $fstype: set BENCH_DIR to a directory on a disk" ;; esac
    need_bytes=$((3 * size + size + (1 << 30) + (1 << 30)))
    avail="$(df --output=avail -B1 "$WORK" | tail -1)"
    [ "$avail" -ge "$need_bytes" ] || die "$WORK: $((avail >> 20)) MiB free, need $((need_bytes >> 20)) MiB"
    log "work directory $WORK on $fsdev ($fstype), $((avail >> 30)) GiB free"
    build

    RB_NETNS="mt-bench-$$"
    ip netns add "$RB_NETNS" || { RB_NETNS=""; die "ip netns add failed"; }
    rb_nsx ip link set lo up || die "cannot bring up lo in $RB_NETNS"

    # Images: the source (seeded pseudo-random), the target (written in full first, so no scenario
    # pays for allocating blocks in the backing file), the retention volume (ext4, own filesystem).
    log "writing the $mib MiB source and target images"
    RB_SRC="$WORK/source.img"
    openssl enc -aes-128-ctr -nosalt -pbkdf2 -pass "pass:mt-bench-$seed" </dev/zero 2>/dev/null \
        | head -c "$size" >"$RB_SRC" || true
    [ "$(stat -c %s "$RB_SRC")" = "$size" ] || die "could not write $RB_SRC"
    dd if=/dev/zero of="$WORK/target.img" bs=1M count="$mib" oflag=direct status=none || die "could not write target.img"
    truncate -s $((size + (2 << 30))) "$WORK/retention.img"
    mkfs.ext4 -q -F -L mtbenchret "$WORK/retention.img" || die "mkfs.ext4 failed"
    attach "$WORK/target.img" --direct-io=on
    RB_TGT="$ATTACHED"
    attach "$WORK/retention.img" --direct-io=on
    mkdir -p "$WORK/ret"
    mount "$ATTACHED" "$WORK/ret" || die "cannot mount the retention volume $ATTACHED"
    RB_MOUNTS+=("$WORK/ret")
    local dio
    dio="$(cat "/sys/block/${RB_TGT#/dev/}/loop/dio" 2>/dev/null || echo '?')"
    [ "$dio" = 1 ] || log "warning: $RB_TGT did not get direct I/O (dio=$dio): writes may stop in the page cache"
    log "target $RB_TGT (direct-io=$dio), retention volume on $ATTACHED at $WORK/ret"
    rb_fig size "$size"; rb_fig target "$RB_TGT"; rb_fig dio "$dio"; rb_fig fs "$fstype"; rb_fig dev "$fsdev"

    # The master target: a lab identity, the target assigned to group g1, serve in our namespace.
    echo "mt-bench-$seed-passphrase" >"$WORK/pass"
    chmod 600 "$WORK/pass"
    RB_FP="$("$BIN" lab init "$WORK/lab" --passphrase-file "$WORK/pass" --retention "$WORK/ret" \
        --port "$RB_MT_PORT" --fast-kdf | tail -1)" || die "mt-agent lab init failed"
    [ -n "$RB_FP" ] || RB_FP="$(openssl x509 -in "$WORK/lab/cert.pem" -outform der | sha256sum | cut -d' ' -f1)"
    "$BIN" targets assign "$RB_TGT" --group g1 --config "$WORK/lab/mt-agent.conf" >"$WORK/assign.out" 2>&1 \
        || { cat "$WORK/assign.out" >&2; die "mt-agent targets assign $RB_TGT failed"; }
    ip netns exec "$RB_NETNS" "$BIN" serve --config "$WORK/lab/mt-agent.conf" --log-level notice 2>"$WORK/serve.log" &
    RB_SERVE=$!
    RB_PIDS+=("$RB_SERVE")
    local i
    for i in $(seq 600); do
        grep -q ready "$WORK/serve.log" && break
        kill -0 "$RB_SERVE" 2>/dev/null || { rb_serve_tail; die "mt-agent serve exited"; }
        sleep 0.1
    done
    grep -q ready "$WORK/serve.log" || { rb_serve_tail; die "mt-agent serve not ready after 60 s"; }
    log "serve ready (pid $RB_SERVE, fingerprint $RB_FP)"
    RB_PAIR="bench-$seed-$$"
    rb_fig pair "$RB_PAIR"

    # (b) The wire: nc on loopback into dd oflag=direct. Run before (a) so that fio's pattern, not
    # the source, is on the target when (c) starts.
    log "(b) nc | dd oflag=direct of $RB_TGT"
    rb_drop_caches
    ip netns exec "$RB_NETNS" sh -c \
        "nc -l 127.0.0.1 $RB_NC_PORT | dd of=$RB_TGT oflag=direct bs=1M iflag=fullblock conv=fsync status=none" \
        2>"$WORK/b.err" &
    local bpid=$! t0 t1 l0 l1
    RB_PIDS+=("$bpid")
    rb_wait_listen "$RB_NC_PORT" "nc -l"
    l0="$(rb_lo)"
    t0="$(rb_now)"
    rb_nsx nc -N 127.0.0.1 "$RB_NC_PORT" <"$RB_SRC" || die "nc (client) failed"
    wait "$bpid" || { cat "$WORK/b.err" >&2; die "nc -l | dd failed"; }
    t1="$(rb_now)"
    l1="$(rb_lo)"
    rb_fig b_wall "$(rb_sub "$t0" "$t1")"
    rb_fig b_mibps "$(awk -v s="$(rb_sub "$t0" "$t1")" -v m="$mib" 'BEGIN { printf "%.3f", m / s }')"
    rb_fig b_lo $((l1 - l0))

    # (a) Raw device: fio O_DIRECT sequential 1 MiB writes, one at a time like dd, fsync at the end.
    log "(a) fio sequential 1 MiB O_DIRECT writes to $RB_TGT"
    rb_drop_caches
    t0="$(rb_now)"
    fio --name=seqwrite --filename="$RB_TGT" --rw=write --bs=1M --size="$size" --direct=1 --ioengine=psync \
        --iodepth=1 --end_fsync=1 --output-format=json --output="$WORK/fio.json" >"$WORK/fio.err" 2>&1 \
        || { cat "$WORK/fio.err" "$WORK/fio.json" >&2; die "fio failed"; }
    t1="$(rb_now)"
    local a_bw a_rt a_mibps tag_every
    read -r a_bw a_rt < <("$PY" "$RB_PY" fio-bw "$WORK/fio.json")
    a_mibps="$(awk -v b="$a_bw" 'BEGIN { printf "%.3f", b / 1048576 }')"
    rb_fig a_mibps "$a_mibps"; rb_fig a_runtime "$a_rt"; rb_fig a_wall "$(rb_sub "$t0" "$t1")"
    # (a') The disk work (d) cannot avoid, by fio alone (no CPU, no network): for each 1 MiB
    # written, the old content read from the target, appended to the journal, and the new content
    # written to the target, as three concurrent jobs. Its time bounds (d) from below.
    log "(a') fio: (d)'s disk work (random reads and writes of $RB_TGT, sequential journal writes)"
    rb_drop_caches
    fio --output-format=json --output="$WORK/fio-d.json" \
        --name=old --filename="$RB_TGT" --rw=randread --bs=1M --size="$size" --direct=1 --ioengine=psync \
        --name=journal --filename="$WORK/ret/fio-journal" --rw=write --bs=4M --size="$size" --direct=1 \
        --ioengine=psync --end_fsync=1 \
        --name=new --filename="$RB_TGT" --rw=randwrite --bs=1M --size="$size" --direct=1 --ioengine=psync \
        --end_fsync=1 >"$WORK/fio-d.err" 2>&1 || { cat "$WORK/fio-d.err" "$WORK/fio-d.json" >&2; die "fio (a') failed"; }
    rm -f "$WORK/ret/fio-journal"
    local a2_seconds a2_jobs
    read -r a2_seconds a2_jobs < <("$PY" "$RB_PY" fio-jobs "$WORK/fio-d.json")
    rb_fig a2_seconds "$a2_seconds"; rb_fig a2_jobs "$a2_jobs"
    # Tags a second come from the sender's clock (--tag-interval 1); BENCH_TAG_EVERY=N puts a tag
    # every N writes into the trace instead.
    tag_every="${BENCH_TAG_EVERY:-0}"

    # (c) Full resync onto the target, TLS on, new pair.
    log "(c) mt-agent send resync --full (pair $RB_PAIR)"
    rb_drop_caches
    rb_send c resync --full
    rb_fig c_wall "$RB_WALL"; rb_fig c_lo "$RB_LOB"
    rb_fig c_seconds "$(rb_json "$WORK/c.json" seconds)"
    rb_fig c_bytes "$(rb_json "$WORK/c.json" sourceBytes)"
    rb_fig c_sent "$(rb_json "$WORK/c.json" stats.bytesSent)"
    rb_fig c_writes "$(rb_json "$WORK/c.json" stats.writes)"
    rb_drop_caches
    rb_fig chk_c "$(rb_same "$RB_SRC" "$RB_TGT")"

    # (c') The pair is in sync: a differential resync must find nothing to send. Its time is what
    # the replay in (d) spends on its own initial differential resync.
    log "(c') mt-agent send resync (differential) of the in-sync pair"
    rb_drop_caches
    rb_send v resync
    rb_fig v_seconds "$(rb_json "$WORK/v.json" seconds)"
    rb_fig v_hashed "$(rb_json "$WORK/v.json" stats.hashedChunks)"
    rb_fig v_differing "$(rb_json "$WORK/v.json" stats.differingChunks)"
    rb_fig v_sent "$(rb_json "$WORK/v.json" stats.bytesSent)"
    rb_fig v_lo "$RB_LOB"

    # (d) Continuous overwrites with journaling, a crash tag about every second at (a)'s rate; the
    # serve's peak RSS over (d) alone (VmHWM reset first) and sampled.
    local tags
    tags="$("$PY" "$RB_PY" trace "$WORK/replay.trace" "$size" "$replay_mib" "$tag_every" "$seed")"
    rb_fig d_writes_trace "$replay_mib"; rb_fig d_tags_trace "$tags"; rb_fig d_tag_every "$tag_every"
    rb_fig d_tag_why "$([ -n "${BENCH_TAG_EVERY:-}" ] && echo "BENCH_TAG_EVERY" || echo "--tag-interval 1: a crash tag every second of the replay")"
    log "(d) mt-agent send replay: $replay_mib random 1 MiB writes, $([ "$tag_every" -gt 0 ] && echo "a crash tag every $tag_every writes" || echo "a crash tag every second")"
    rb_drop_caches
    rb_fig f_hwm_before_kib "$(awk '/^VmHWM:/ { print $2 }' "/proc/$RB_SERVE/status")"
    echo 5 >"/proc/$RB_SERVE/clear_refs" || log "warning: cannot reset VmHWM of $RB_SERVE: (f) covers the whole run"
    "$PY" "$RB_PY" rss "$RB_SERVE" "$WORK/rss.max" &
    local rss_pid=$!
    RB_PIDS+=("$rss_pid")
    if [ "$tag_every" -gt 0 ]; then
        rb_send d replay "$WORK/replay.trace"
    else
        rb_send d replay "$WORK/replay.trace" --tag-interval 1
    fi
    rb_fig f_hwm_kib "$(awk '/^VmHWM:/ { print $2 }' "/proc/$RB_SERVE/status")"
    kill "$rss_pid" 2>/dev/null
    wait "$rss_pid" 2>/dev/null || true
    rb_fig f_rss_kib "$(cat "$WORK/rss.max" 2>/dev/null || echo 0)"
    rb_fig d_wall "$RB_WALL"; rb_fig d_lo "$RB_LOB"
    rb_fig d_seconds "$(rb_json "$WORK/d.json" seconds)"
    rb_fig d_bytes "$(rb_json "$WORK/d.json" stats.bytesSent)"
    rb_fig d_writes "$(rb_json "$WORK/d.json" stats.writes)"
    rb_fig d_tags "$(rb_json "$WORK/d.json" stats.tags)"
    rb_fig d_reconnects "$(rb_json "$WORK/d.json" stats.reconnects)"
    rb_fig d_hashed "$(rb_json "$WORK/d.json" stats.hashedChunks)"
    rb_fig d_differing "$(rb_json "$WORK/d.json" stats.differingChunks)"
    rb_fig d_journal "$(du -sb "$WORK/ret" | cut -f1)"
    rb_drop_caches
    rb_fig chk_d "$(rb_same "$RB_SRC" "$RB_TGT")"

    # (e) Differential resync of a 1 % change: mt-agent onto the target (holding the old content)
    # vs rsync through a daemon on loopback onto a copy of the old image, a regular file.
    log "(e) copying the old image for rsync and changing 1 % of the source's 4 KiB blocks"
    mkdir -p "$WORK/rsync"
    cp --sparse=never "$RB_SRC" "$WORK/rsync/old.img"
    local blocks changed
    read -r blocks changed < <("$PY" "$RB_PY" mutate "$RB_SRC" 1 4096 "$seed")
    rb_fig e_blocks "$blocks"; rb_fig e_changed "$changed"
    cat >"$WORK/rsyncd.conf" <<EOF
use chroot = no
pid file = $WORK/rsyncd.pid
[bench]
    path = $WORK/rsync
    read only = no
    uid = root
    gid = root
EOF
    ip netns exec "$RB_NETNS" rsync --daemon --no-detach --config="$WORK/rsyncd.conf" --address=127.0.0.1 \
        --port="$RB_RSYNC_PORT" --log-file="$WORK/rsyncd.log" &
    RB_PIDS+=($!)
    rb_wait_listen "$RB_RSYNC_PORT" "rsync --daemon"

    log "(e) mt-agent send resync (differential)"
    rb_drop_caches
    rb_send e resync
    rb_fig e_mt_wall "$RB_WALL"; rb_fig e_mt_lo "$RB_LOB"
    rb_fig e_mt_seconds "$(rb_json "$WORK/e.json" seconds)"
    rb_fig e_mt_sent "$(rb_json "$WORK/e.json" stats.bytesSent)"
    rb_fig e_mt_hashed "$(rb_json "$WORK/e.json" stats.hashedChunks)"
    rb_fig e_mt_differing "$(rb_json "$WORK/e.json" stats.differingChunks)"

    log "(e) rsync --inplace --no-whole-file to rsync://127.0.0.1:$RB_RSYNC_PORT/bench/old.img"
    rb_drop_caches
    l0="$(rb_lo)"
    t0="$(rb_now)"
    rb_nsx rsync --inplace --no-whole-file --ignore-times --stats "$RB_SRC" \
        "rsync://127.0.0.1:$RB_RSYNC_PORT/bench/old.img" >"$WORK/rsync.out" 2>&1 \
        || { cat "$WORK/rsync.out" >&2; tail "$WORK/rsyncd.log" >&2; die "rsync failed"; }
    t1="$(rb_now)"
    l1="$(rb_lo)"
    rb_fig e_rs_wall "$(rb_sub "$t0" "$t1")"; rb_fig e_rs_lo $((l1 - l0))
    t0="$(rb_now)"
    sync "$WORK/rsync/old.img"
    rb_fig e_rs_sync "$(rb_sub "$t0" "$(rb_now)")"
    rb_fig e_rs_sent "$(awk -F': ' '/^Total bytes sent/ { gsub(/,/, "", $2); print $2 }' "$WORK/rsync.out")"
    rb_fig e_rs_recv "$(awk -F': ' '/^Total bytes received/ { gsub(/,/, "", $2); print $2 }' "$WORK/rsync.out")"
    rb_fig e_rs_literal "$(awk -F': ' '/^Literal data/ { gsub(/,/, "", $2); split($2, w, " "); print w[1] }' "$WORK/rsync.out")"
    rb_drop_caches
    rb_fig chk_e "$(rb_same "$RB_SRC" "$RB_TGT")"
    rb_fig chk_rs "$(rb_same "$RB_SRC" "$WORK/rsync/old.img")"

    rb_fig serve_warnings "$(grep -c ' warning ' "$WORK/serve.log" || true)"
    rb_fig serve_errors "$(grep -c -E ' (error|critical) ' "$WORK/serve.log" || true)"
    "$PY" "$RB_PY" report "$RB_FIG"
    if grep -q -E ' (warning|error|critical) ' "$WORK/serve.log"; then
        echo "serve's warnings and errors (first 10):"
        grep -E ' (warning|error|critical) ' "$WORK/serve.log" | head -10 | sed 's/^/  /'
    fi
    echo "(took $((SECONDS - start)) s; load average $load0 at the start, $(cut -d' ' -f1-3 /proc/loadavg) at the end;" \
         "$(nproc) CPUs; network in namespace $RB_NETNS)"
}
