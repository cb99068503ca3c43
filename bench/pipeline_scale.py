"""Benchmark: how generation and the validation front scale from 100k to 1M rows.

Each step runs as its own `tandem` process; wall time is measured around it and peak RSS is
the peak of the summed resident memory of the whole process tree (Beam workers included),
sampled every 100 ms. Prints t(large)/t(small) per step: near-linear scaling is <= 12 for 10x.

    python bench/pipeline_scale.py [--rows 100000,1000000] [--work DIR]
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time

import psutil

TANDEM = [sys.executable, "-m", "pipeline.cli"]


def tree_rss(proc: psutil.Process) -> int:
    total = 0
    for p in [proc, *proc.children(recursive=True)]:
        try:
            total += p.memory_info().rss
        except psutil.Error:
            pass
    return total


def measure(cmd: list[str], log_path: str) -> tuple[float, float]:
    """Run cmd; return (wall seconds, peak tree RSS in MB). Fails loudly on error."""
    start = time.monotonic()
    with open(log_path, "w") as log:
        child = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT)
        proc = psutil.Process(child.pid)
        peak = [0]
        done = threading.Event()

        def sample() -> None:
            while not done.is_set():
                try:
                    peak[0] = max(peak[0], tree_rss(proc))
                except psutil.Error:
                    pass
                done.wait(0.1)

        sampler = threading.Thread(target=sample, daemon=True)
        sampler.start()
        code = child.wait()
        done.set()
        sampler.join()
    elapsed = time.monotonic() - start
    if code not in (0,):
        sys.exit(f"step failed with status {code}: {' '.join(cmd)} (log: {log_path})")
    return elapsed, peak[0] / 2**20


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", default="100000,1000000", help="two row counts, small,large")
    parser.add_argument("--work", default=None, help="scratch directory (default: a temp dir)")
    args = parser.parse_args()
    small, large = (int(x) for x in args.rows.split(","))
    work = args.work or tempfile.mkdtemp(prefix="tandem-bench-")
    os.makedirs(work, exist_ok=True)
    results: dict[tuple[str, int], tuple[float, float]] = {}
    for rows in (small, large):
        data, out = os.path.join(work, f"data-{rows}"), os.path.join(work, f"out-{rows}")
        shutil.rmtree(data, ignore_errors=True)
        shutil.rmtree(out, ignore_errors=True)
        steps = {
            "generate": TANDEM + ["data", "generate", "--rows", str(rows), "--out", data],
            "validation front": TANDEM + [
                "run", "--config", "listening", "--until", "validate",
                "--set", f"data.location={data}", "--set", f"output_dir={out}",
            ],
        }
        for step, cmd in steps.items():
            print(f"{step} at {rows:,} rows ...", flush=True)
            results[(step, rows)] = measure(cmd, os.path.join(work, f"{step[:8]}-{rows}.log"))
            t, rss = results[(step, rows)]
            print(f"  {t:.1f}s, peak RSS {rss:,.0f} MB", flush=True)

    print(f"\n{'step':<18}{'t(' + f'{small:,}' + ')':>14}{'t(' + f'{large:,}' + ')':>16}"
          f"{'ratio':>8}{'peak RSS ' + f'{large:,}':>22}")
    for step in ("generate", "validation front"):
        (ts, _), (tl, rl) = results[(step, small)], results[(step, large)]
        print(f"{step:<18}{ts:>13.1f}s{tl:>15.1f}s{tl / ts:>8.2f}{rl:>19,.0f} MB")
    print(f"\n(near-linear: ratio <= 12 for {large // small}x rows; scratch data in {work})")


if __name__ == "__main__":
    main()
