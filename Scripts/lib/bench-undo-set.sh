# Scripts/bench undo-set: the memory of a pair's undo set does not grow with the disk
# (docs/JOURNAL.md "The undo set"). Runs Tests/MTAgentJournalTests/UndoSetMemoryBench at two
# sizes, one process each: a resync of an in-sync pair in which every 1 MiB chunk differs, driving
# PairApplier on a sparse file in /tmp (it writes about twice the size: target and undo; removed
# after). Prints each run's peak RSS (VmHWM, reset before the resync) and the difference.
#
#   BENCH_UNDO_SMALL_MIB  default 1024
#   BENCH_UNDO_LARGE_MIB  default 16384 (16 times the small one)

bench_undo_set() {
    local small="${BENCH_UNDO_SMALL_MIB:-1024}" large="${BENCH_UNDO_LARGE_MIB:-16384}"
    log "undo set: building the tests (debug)"
    (cd "$REPO" && swift build --build-tests >/dev/null) || die "swift build --build-tests failed"
    local mib out line small_kib="" large_kib=""
    for mib in "$small" "$large"; do
        log "undo set: a resync of $mib MiB where every chunk differs"
        out=$(cd "$REPO" && MT_UNDO_BENCH_MIB="$mib" swift test --skip-build --filter UndoSetMemoryBench 2>&1) \
            || { echo "$out" >&2; die "the undo-set bench test failed"; }
        line=$(grep -o 'undo-set-bench .*' <<<"$out") || die "no figures in the test's output"
        echo "$line"
        if [ "$mib" = "$small" ]; then small_kib=${line##*peak_rss_kib=}; small_kib=${small_kib%% *}
        else large_kib=${line##*peak_rss_kib=}; large_kib=${large_kib%% *}; fi
    done
    local diff=$(( (large_kib - small_kib) / 1024 ))
    echo
    echo "== undo set: peak RSS at $large MiB minus at $small MiB = $diff MiB (goal: at most 32 MiB) $([ "$diff" -le 32 ] && echo PASS || echo MISS)"
}
