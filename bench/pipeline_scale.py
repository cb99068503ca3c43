"""Benchmark: how generation, the validation front and the full pipeline scale from 100k
to 1M rows, and what a cached rerun on unchanged inputs costs.

Each step runs as its own `tandem` process. Wall time is measured around it; memory is the
peak over the whole process tree (Beam workers included), sampled every 250 ms, both as summed
RSS (counts shared library pages once per process, an upper bound) and summed PSS (shared
pages split between the processes that map them: the real footprint). Prints t(large)/t(small)
per step (near-linear scaling is <= 12 for 10x rows), each component's time in the full runs
(from the `[Component] finished in` lines `tandem run` prints), and the cached rerun's time as a
share of the first full run's.

    python bench/pipeline_scale.py [--rows 100000,1000000] [--steps generate,front,full,cached]
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import sys
import tempfile
import threading
import time

import psutil

TANDEM = [sys.executable, "-m", "tandem.pipeline.cli"]


def tree_memory(proc: psutil.Process) -> tuple[int, int]:
    """(summed RSS, summed PSS) of a process and all its descendants, in bytes."""
    rss = pss = 0
    for p in [proc, *proc.children(recursive=True)]:
        try:
            info = p.memory_full_info()
            rss += info.rss
            pss += info.pss
        except psutil.Error:
            pass
    return rss, pss


def measure(cmd: list[str], log_path: str) -> tuple[float, float, float]:
    """Run cmd; return (wall seconds, peak tree RSS MB, peak tree PSS MB). Exits on error."""
    start = time.monotonic()
    with open(log_path, "w") as log:
        child = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT)
        proc = psutil.Process(child.pid)
        peak = [0, 0]
        done = threading.Event()

        def sample() -> None:
            while not done.is_set():
                try:
                    rss, pss = tree_memory(proc)
                    peak[0], peak[1] = max(peak[0], rss), max(peak[1], pss)
                except psutil.Error:
                    pass
                done.wait(0.25)

        sampler = threading.Thread(target=sample, daemon=True)
        sampler.start()
        code = child.wait()
        done.set()
        sampler.join()
    elapsed = time.monotonic() - start
    if code not in (0,):
        sys.exit(f"step failed with status {code}: {' '.join(cmd)} (log: {log_path})")
    return elapsed, peak[0] / 2**20, peak[1] / 2**20


FINISHED = re.compile(r"\[(\w+)\] finished in ([0-9.]+)s")  # after the line's timestamp


def component_times(log_path: str) -> dict[str, float]:
    """Each component's time, in run order, from a `tandem run` log."""
    with open(log_path) as f:
        return {name: float(t) for name, t in FINISHED.findall(f.read())}


STEPS = ("generate", "front", "full", "cached")
LABELS = {"generate": "generate", "front": "validation front", "full": "full pipeline",
          "cached": "cached rerun"}


def commands(step: str, rows: int, work: str) -> list[str]:
    data = os.path.join(work, f"data-{rows}")
    if step == "generate":
        return TANDEM + ["data", "generate", "--rows", str(rows), "--out", data]
    until = "validate" if step == "front" else "push"
    out = os.path.join(work, f"out-{'front' if step == 'front' else 'full'}-{rows}")
    return TANDEM + ["run", "--config", "listening", "--until", until,
                     "--set", f"data.location={data}", "--set", f"output_dir={out}"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", default="100000,1000000", help="two row counts, small,large")
    parser.add_argument("--steps", default=",".join(STEPS), help="subset of " + ",".join(STEPS))
    parser.add_argument("--work", default=None, help="scratch directory (default: a temp dir)")
    args = parser.parse_args()
    small, large = (int(x) for x in args.rows.split(","))
    steps = [s for s in args.steps.split(",") if s]
    unknown = set(steps) - set(STEPS)
    if unknown:
        sys.exit(f"unknown step(s): {', '.join(sorted(unknown))}")
    if "generate" not in steps:
        steps.insert(0, "generate")  # every other step reads the generated data
    work = args.work or tempfile.mkdtemp(prefix="tandem-bench-")
    os.makedirs(work, exist_ok=True)
    results: dict[tuple[str, int], tuple[float, float, float]] = {}
    for rows in (small, large):
        for step in steps:
            if step != "cached":
                for name in ("data" if step == "generate" else f"out-{step}",):
                    shutil.rmtree(os.path.join(work, f"{name}-{rows}"), ignore_errors=True)
            print(f"{LABELS[step]} at {rows:,} rows ...", flush=True)
            log = os.path.join(work, f"{step}-{rows}.log")
            results[(step, rows)] = measure(commands(step, rows, work), log)
            t, rss, pss = results[(step, rows)]
            print(f"  {t:.1f}s, peak RSS {rss:,.0f} MB, peak PSS {pss:,.0f} MB", flush=True)

    print(f"\n{'step':<18}{'t(' + f'{small:,}' + ')':>14}{'t(' + f'{large:,}' + ')':>16}"
          f"{'ratio':>8}{'peak RSS':>12}{'peak PSS':>12}   (memory at {large:,} rows)")
    for step in steps:
        (ts, _, _), (tl, rl, pl) = results[(step, small)], results[(step, large)]
        print(f"{LABELS[step]:<18}{ts:>13.1f}s{tl:>15.1f}s{tl / ts:>8.2f}"
              f"{rl:>9,.0f} MB{pl:>9,.0f} MB")
    if "full" in steps:
        times = [component_times(os.path.join(work, f"full-{rows}.log")) for rows in (small, large)]
        print(f"\n{'component':<22}{'t(' + f'{small:,}' + ')':>14}{'t(' + f'{large:,}' + ')':>16}"
              f"{'ratio':>8}")
        for name in times[1]:
            ts, tl = times[0].get(name), times[1][name]
            print(f"{name:<22}" + (f"{ts:>13.1f}s" if ts is not None else f"{'-':>14}")
                  + f"{tl:>15.1f}s" + (f"{tl / ts:>8.2f}" if ts else f"{'-':>8}"))
    if "full" in steps and "cached" in steps:
        for rows in (small, large):
            share = results[("cached", rows)][0] / results[("full", rows)][0]
            print(f"cached rerun / first full run at {rows:,} rows: {share:.1%}")
    print(f"\n(near-linear: ratio <= 12 for {large // small}x rows; scratch data in {work})")


if __name__ == "__main__":
    main()
