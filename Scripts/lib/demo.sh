# Helpers of Scripts/demo (sourced, not run): messages, the things the demo created and their
# cleanup, the source writers, the fsfreeze hook that hashes the sources inside each freeze, and
# reading mt-agent's JSON without jq.
# shellcheck shell=bash

DEMO_WORK=""        # the work directory (/var/tmp/mt-agent-demo.XXXXXX)
DEMO_LOOPS=()       # loop devices this run attached
DEMO_MOUNTS=()      # mount points this run mounted
DEMO_SOURCE_MOUNTS=()   # source mount points that may be left frozen by a killed sender
DEMO_WRITERS=()     # pids of the source writers
DEMO_SERVE_PID=""
DEMO_SEND_PID=""
DEMO_CLEANING=0
DEMO_INTERRUPTED=0

say() { echo "demo: $*"; }
warn() { echo "demo: warning: $*" >&2; }
die() {
    echo "demo: error: $*" >&2
    exit 1
}

now_ns() { date +%s%N; }
# seconds (3 decimals) between two nanosecond times
secs_between() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.3f", (b - a) / 1e9 }'; }
fmt2() { awk -v x="$1" 'BEGIN { printf "%.2f", x }'; }
mib() { awk -v b="$1" 'BEGIN { printf "%.1f MiB", b / 1048576 }'; }

# SHA-256 of a whole block device, read with O_DIRECT: what is on the device, not what a page
# cache may remember of it.
hash_device() {
    local out
    out=$(dd if="$1" bs=4M iflag=direct status=none | sha256sum) || return 1
    echo "${out%% *}"
}

# The first number after "KEY" : in pretty-printed JSON (mt-agent prints sorted keys, one a line).
json_num() {  # key file
    sed -n "s/^ *\"$1\" : \(-\{0,1\}[0-9][0-9.eE+-]*\),\{0,1\}\$/\1/p" "$2" | head -n 1
}

# The sum of every "KEY" : NUMBER in pretty-printed JSON.
sum_key() {  # key file
    awk -v k="\"$1\"" '$1 == k && $2 == ":" { v = $3; sub(/,$/, "", v); s += v } END { printf "%.0f\n", s }' "$2"
}

# The points of `mt-agent points --json`, one a line: ID KIND SOURCE_TIME_NS LATEST LATEST_APP.
# mt-agent's JSON has sorted keys, so sourceTimeNs is the last of these in each point.
points_table() {  # file
    awk '
        /"id" :/          { v = $3; sub(/,$/, "", v); id = v }
        /"kind" :/        { v = $3; gsub(/[",]/, "", v); kind = v }
        /"latest" :/      { v = $3; sub(/,$/, "", v); latest = v }
        /"latestApp" :/   { v = $3; sub(/,$/, "", v); latestApp = v }
        /"sourceTimeNs" :/ { v = $3; sub(/,$/, "", v); print id, kind, v, latest, latestApp }
    ' "$1"
}

# Prints tab-separated lines as a table with aligned columns, indented (first columns ASCII).
print_table() {
    awk -F '\t' '
        { for (i = 1; i <= NF; i++) { cell[NR, i] = $i; if (length($i) > w[i]) w[i] = length($i) }
          if (NF > nf) nf = NF }
        END { for (r = 1; r <= NR; r++) {
                line = "  "
                for (i = 1; i < nf; i++) line = line sprintf("%-" (w[i] + 2) "s", cell[r, i])
                print line cell[r, nf] } }'
}

# Attaches a loop device over IMAGE, sets LOOP to it and remembers it for the cleanup (not in a
# command substitution: that subshell would forget it).
LOOP=""
attach_loop() {
    LOOP=$(losetup --find --show "$1") || die "losetup --find --show $1 failed"
    DEMO_LOOPS+=("$LOOP")
}

mount_here() {  # device mountpoint
    mkdir -p "$2"
    mount "$1" "$2" || die "cannot mount $1 on $2"
    DEMO_MOUNTS+=("$2")
}

# A source's application: until STOPFILE exists, writes files of random sizes (4 KiB … 512 KiB),
# overwrites parts of existing ones, deletes some, and syncs now and then: about 1 MiB/s. At most
# 48 files of at most 1 MiB: the 256 MiB filesystem never fills. Blocks (as any writer does)
# while it is frozen.
demo_writer() {  # mountpoint stopfile
    local dir="$1/data" stop="$2" n size off
    set +eE
    trap - ERR
    mkdir -p "$dir"
    while [ ! -e "$stop" ]; do
        n=$((RANDOM % 48))
        case $((RANDOM % 10)) in
            0 | 1 | 2 | 3 | 4)
                size=$((1 + RANDOM % 128))
                dd if=/dev/urandom of="$dir/f$n" bs=4k count="$size" status=none 2>/dev/null ;;
            5 | 6 | 7)
                off=$((RANDOM % 192)); size=$((1 + RANDOM % 64))
                [ -e "$dir/f$n" ] && dd if=/dev/urandom of="$dir/f$n" bs=4k seek="$off" count="$size" conv=notrunc status=none 2>/dev/null ;;
            8) rm -f "$dir/f$n" ;;
            9) sync -f "$dir" 2>/dev/null ;;
        esac
        sleep 0.$((1 + RANDOM % 3))
    done
}

# Writes DIR/fsfreeze, which `mt-agent send` finds first in its PATH (it runs `fsfreeze -f|-u
# MOUNTPOINT` around each app-consistent tag). It freezes and thaws with the real fsfreeze; in
# between, while the filesystem is frozen, it records the source device's SHA-256 right after the
# freeze and again right before the thaw, each with the wall-clock time, in LOG:
#   freeze MOUNTPOINT DEVICE TIME_NS SHA256      (time taken after the freeze took effect)
#   thaw   MOUNTPOINT DEVICE TIME_NS SHA256      (time taken before the thaw)
# The sender takes its tag between its last freeze and its first thaw, so a point whose source
# time falls inside both windows, with equal hashes at both ends, had exactly that content.
write_freeze_hook() {  # dir log
    local real
    real=$(command -v fsfreeze) || die "fsfreeze not found (util-linux)"
    mkdir -p "$1"
    {
        echo '#!/usr/bin/env bash'
        echo '# fsfreeze for Scripts/demo: see write_freeze_hook in Scripts/lib/demo.sh.'
        printf 'real=%q log=%q\n' "$real" "$2"
        cat <<'EOF'
[ $# -eq 2 ] || exec "$real" "$@"
flag=$1 mnt=$2
dev=$(findmnt -n -o SOURCE --mountpoint "$mnt" 2>/dev/null)
devhash() { local out; out=$(dd if="$dev" bs=4M iflag=direct status=none | sha256sum) && echo "${out%% *}"; }
case "$flag" in
    -f)
        "$real" -f "$mnt" || exit
        t=$(date +%s%N)
        h=$(devhash) || h=unreadable
        echo "freeze $mnt ${dev:-?} $t ${h:-unreadable}" >>"$log"
        exit 0 ;;
    -u)
        h=$(devhash) || h=unreadable
        t=$(date +%s%N)
        echo "thaw $mnt ${dev:-?} $t ${h:-unreadable}" >>"$log"
        exec "$real" -u "$mnt" ;;
    *) exec "$real" "$@" ;;
esac
EOF
    } >"$1/fsfreeze"
    chmod 755 "$1/fsfreeze"
}

# The content each source had at an app point: prints "HASH1 HASH2" (sources in the order of the
# mount points given) when TIME_NS lies inside one recorded freeze window of every mount point and
# the hashes at both ends of that window are equal; prints nothing otherwise.
content_at() {  # log time_ns mountpoint...
    local log="$1" t="$2" m out="" h
    shift 2
    for m in "$@"; do
        # Times compared as decimal strings (exact; awk numbers are doubles). No regex
        # intervals: Debian's mawk has none.
        h=$(awk -v m="$m" -v t="$t" '
            function lt(a, b) { return length(a) < length(b) || (length(a) == length(b) && (a "") < (b "")) }
            $2 != m { next }
            $1 == "freeze" { ft = $4; fh = $5; open = 1; next }
            $1 == "thaw" && open {
                open = 0
                if (lt(ft, t) && lt(t, $4) && fh == $5 && length(fh) == 64 && fh !~ /[^0-9a-f]/) { print fh; exit }
            }' "$log")
        [ -n "$h" ] || return 0
        out="${out:+$out }$h"
    done
    echo "$out"
}

# Stops and undoes everything this run started or made, in order; safe to run at any point.
demo_cleanup() {
    local rc=$? pid m i dev
    set +e
    trap - ERR
    trap '' INT TERM HUP
    [ "$DEMO_CLEANING" = 1 ] && return
    DEMO_CLEANING=1
    if [ "$rc" -ne 0 ] && [ "$DEMO_INTERRUPTED" = 0 ] && [ -n "$DEMO_WORK" ]; then
        for f in send.log serve.log; do
            [ -s "$DEMO_WORK/$f" ] || continue
            echo "demo: last lines of $f:" >&2
            tail -n 8 "$DEMO_WORK/$f" | sed 's/^/  /' >&2
        done
    fi
    [ -n "$DEMO_WORK" ] && [ -d "$DEMO_WORK" ] && touch "$DEMO_WORK/stop"
    if [ -n "$DEMO_SEND_PID" ] && kill -0 "$DEMO_SEND_PID" 2>/dev/null; then
        kill -TERM "$DEMO_SEND_PID"
        for i in $(seq 100); do kill -0 "$DEMO_SEND_PID" 2>/dev/null || break; sleep 0.1; done
        kill -KILL "$DEMO_SEND_PID" 2>/dev/null
        wait "$DEMO_SEND_PID" 2>/dev/null
    fi
    # A sender stopped inside an app-consistent cycle leaves the sources frozen: thaw them, or
    # the writers (and the unmount) would wait for ever.
    for m in "${DEMO_SOURCE_MOUNTS[@]}"; do fsfreeze -u "$m" >/dev/null 2>&1; done
    for pid in "${DEMO_WRITERS[@]}"; do
        for i in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
        kill -TERM "$pid" 2>/dev/null
        wait "$pid" 2>/dev/null
    done
    if [ -n "$DEMO_SERVE_PID" ] && kill -0 "$DEMO_SERVE_PID" 2>/dev/null; then
        kill -TERM "$DEMO_SERVE_PID"
        for i in $(seq 300); do kill -0 "$DEMO_SERVE_PID" 2>/dev/null || break; sleep 0.1; done
        kill -0 "$DEMO_SERVE_PID" 2>/dev/null && { warn "serve did not stop within 30 s of SIGTERM; killing it"; kill -KILL "$DEMO_SERVE_PID"; }
        wait "$DEMO_SERVE_PID" 2>/dev/null
    fi
    for ((i = ${#DEMO_MOUNTS[@]} - 1; i >= 0; i--)); do
        m=${DEMO_MOUNTS[i]}
        umount "$m" 2>/dev/null || { sleep 1; umount "$m" 2>/dev/null; } || umount -l "$m" || warn "could not unmount $m"
    done
    for ((i = ${#DEMO_LOOPS[@]} - 1; i >= 0; i--)); do
        dev=${DEMO_LOOPS[i]}
        losetup -d "$dev" 2>/dev/null || { sleep 1; losetup -d "$dev"; } || warn "could not detach $dev"
    done
    if [ -n "$DEMO_WORK" ] && [ -d "$DEMO_WORK" ]; then
        if [ "${DEMO_KEEP:-0}" = 1 ]; then
            rm -f "$DEMO_WORK"/*.img
            echo "demo: kept the logs and JSON outputs in $DEMO_WORK (DEMO_KEEP=1)" >&2
        else
            rm -rf "$DEMO_WORK" || warn "could not remove $DEMO_WORK"
        fi
    fi
    [ "$rc" -eq 0 ] || echo "demo: cleaned up" >&2
    exit "$rc"
}
