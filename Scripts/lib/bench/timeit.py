#!/usr/bin/env python3
"""Times two commands against each other, interleaved, in one invocation.

  timeit.py --label NAME --runs N [--warmup W] [--out FILE.json] -- CMD_A... ::: CMD_B...

Each round runs A and B once, alternating which goes first (ABBA...) so neither gains from
running second. Commands are spawned directly (no shell) with stdin, stdout and stderr on
/dev/null; wall time is measured around posix_spawn..wait4, CPU time (user+sys) from wait4's
rusage. A non-zero exit status aborts the run (exit 2) after showing that command's stderr.
Prints one line per command and the ratios A/B; --out writes the figures as JSON.
"""
import argparse
import json
import os
import statistics
import subprocess
import sys
import time


def spawn_timed(argv, devnull):
    actions = [(os.POSIX_SPAWN_DUP2, devnull, 0), (os.POSIX_SPAWN_DUP2, devnull, 1),
               (os.POSIX_SPAWN_DUP2, devnull, 2)]
    t0 = time.perf_counter_ns()
    pid = os.posix_spawnp(argv[0], argv, os.environ, file_actions=actions)
    _, status, ru = os.wait4(pid, 0)
    wall = (time.perf_counter_ns() - t0) / 1e6
    if os.waitstatus_to_exitcode(status) != 0:
        r = subprocess.run(argv, capture_output=True, text=True)
        sys.stderr.write(f"timeit: {' '.join(argv)} failed (exit {os.waitstatus_to_exitcode(status)}):\n{r.stderr[-2000:]}\n")
        sys.exit(2)
    return wall, (ru.ru_utime + ru.ru_stime) * 1e3


def stats(samples):
    s = sorted(samples)
    return {"median": statistics.median(s), "mean": statistics.fmean(s), "stdev": statistics.pstdev(s),
            "min": s[0], "p90": s[min(len(s) - 1, int(round(0.9 * (len(s) - 1))))]}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--label", required=True)
    ap.add_argument("--runs", type=int, default=50)
    ap.add_argument("--warmup", type=int, default=3)
    ap.add_argument("--out")
    ap.add_argument("cmds", nargs=argparse.REMAINDER)
    args = ap.parse_args()
    cmds = args.cmds[1:] if args.cmds[:1] == ["--"] else args.cmds
    if ":::" not in cmds:
        ap.error("expected CMD_A ::: CMD_B")
    i = cmds.index(":::")
    a, b = cmds[:i], cmds[i + 1:]
    if not a or not b:
        ap.error("empty command")

    devnull = os.open(os.devnull, os.O_RDWR)
    for _ in range(args.warmup):
        spawn_timed(a, devnull)
        spawn_timed(b, devnull)
    wall = {"a": [], "b": []}
    cpu = {"a": [], "b": []}
    for r in range(args.runs):
        order = ("a", "b") if r % 2 == 0 else ("b", "a")
        for key in order:
            w, c = spawn_timed(a if key == "a" else b, devnull)
            wall[key].append(w)
            cpu[key].append(c)

    result = {"label": args.label, "runs": args.runs, "a": {"cmd": a}, "b": {"cmd": b}}
    for key in ("a", "b"):
        result[key]["wall_ms"] = stats(wall[key])
        result[key]["cpu_ms"] = stats(cpu[key])
    wa, wb = result["a"]["wall_ms"], result["b"]["wall_ms"]
    result["ratio_median"] = wa["median"] / wb["median"]
    result["ratio_mean"] = wa["mean"] / wb["mean"]
    result["cpu_ratio_median"] = result["a"]["cpu_ms"]["median"] / result["b"]["cpu_ms"]["median"] if result["b"]["cpu_ms"]["median"] else None

    for key in ("a", "b"):
        w, c = result[key]["wall_ms"], result[key]["cpu_ms"]
        name = os.path.basename(result[key]["cmd"][0])
        print(f"  {args.label:<14} {name:<9} wall median {w['median']:7.2f} ms  mean {w['mean']:7.2f}  "
              f"sd {w['stdev']:6.2f}  min {w['min']:7.2f}  p90 {w['p90']:7.2f}   cpu median {c['median']:7.2f} ms")
    print(f"  {args.label:<14} ratio {os.path.basename(a[0])}/{os.path.basename(b[0])}: "
          f"median {result['ratio_median']:.2f}, mean {result['ratio_mean']:.2f}  ({args.runs} interleaved runs each)")
    if args.out:
        with open(args.out, "w") as f:
            json.dump(result, f, indent=1)


if __name__ == "__main__":
    main()
