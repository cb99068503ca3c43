"""Benchmark: what the Trainer's model checks (the automated ML Test Score evidence) cost a
default run.

The listening pipeline (`tandem run --config listening`, default Beam settings) on the same
generated span, twice per round in alternating order, each in a fresh output directory (no
cache): once with the checks (the default) and once with `checks.enabled=false`. Prints the
wall time, the Trainer's own time and the peak resident memory of the run's whole process
tree (sampled every 0.2 s), and the ratios.

    python bench/score_checks.py [--rows 12000] [--rounds 1]
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
import tempfile
import time

os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
os.environ.setdefault("PYTHONWARNINGS", "ignore::FutureWarning,ignore::DeprecationWarning")
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def one_run(data: str, out: str, checks: bool) -> dict[str, float]:
    cmd = [sys.executable, "-m", "tandem.pipeline.cli", "run", "--config", "listening",
           "--set", f"data.location={data}", "--set", f"output_dir={out}"]
    if not checks:
        cmd += ["--set", "checks.enabled=false"]
    env = {**os.environ, "TF_USE_LEGACY_KERAS": "1", "TF_CPP_MIN_LOG_LEVEL": "3"}
    import psutil

    started = time.perf_counter()
    with tempfile.TemporaryFile("w+") as stdout, tempfile.TemporaryFile("w+") as stderr:
        proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=stdout, stderr=stderr)
        root, peak = psutil.Process(proc.pid), 0
        while proc.poll() is None:
            total = 0
            try:
                for p in [root, *root.children(recursive=True)]:
                    try:
                        total += p.memory_info().rss
                    except psutil.Error:
                        pass
            except psutil.Error:
                pass
            peak = max(peak, total)
            time.sleep(0.2)
        wall = time.perf_counter() - started
        stdout.seek(0)
        stderr.seek(0)
        out, err = stdout.read(), stderr.read()
    if proc.returncode != 0:
        sys.exit(f"run failed ({'with' if checks else 'without'} checks):\n{out[-3000:]}"
                 f"\n{err[-2000:]}")
    trainer = re.search(r"\[Trainer\] finished in ([\d.]+)s", out)
    return {"wall": wall, "trainer": float(trainer.group(1)) if trainer else float("nan"),
            "peak_mib": peak / 2**20}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=12000)
    parser.add_argument("--rounds", type=int, default=1)
    args = parser.parse_args()
    sys.path.insert(0, ROOT)
    import warnings

    warnings.simplefilter("ignore", FutureWarning)
    from tandem.pipeline.datasets import listening

    work = tempfile.mkdtemp(prefix="tandem-bench-checks-")
    data = os.path.join(work, "data")
    print(f"generating {args.rows:,} listening examples in {work} ...", flush=True)
    listening.generate(data, args.rows, seed=0)
    results: dict[bool, list[dict]] = {True: [], False: []}
    for r in range(args.rounds):
        for checks in ((False, True) if r % 2 == 0 else (True, False)):
            name = "with" if checks else "without"
            print(f"round {r + 1}: run {name} the model checks ...", flush=True)
            results[checks].append(one_run(data, os.path.join(work, f"out-{name}-{r}"), checks))
            res = results[checks][-1]
            print(f"  {res['wall']:.1f}s wall, Trainer {res['trainer']:.1f}s", flush=True)

    def mean(key: str, checks: bool) -> float:
        values = [x[key] for x in results[checks]]
        return sum(values) / len(values)

    print(f"\nlistening pipeline, {args.rows:,} rows, {args.rounds} round(s), 2 cores:")
    print(f"{'':<26}{'without checks':>16}{'with checks':>14}{'ratio':>8}")
    for key, label in (("wall", "wall time (s)"), ("trainer", "Trainer (s)")):
        a, b = mean(key, False), mean(key, True)
        print(f"{label:<26}{a:>16.1f}{b:>14.1f}{b / a:>7.2f}x")
    a, b = max(x["peak_mib"] for x in results[False]), max(x["peak_mib"] for x in results[True])
    print(f"{'peak RSS, all processes (MiB)':<26}{a:>16.0f}{b:>14.0f}{b / a:>7.2f}x")
    extra = mean("wall", True) / mean("wall", False) - 1
    print(f"\nthe checks add {extra:+.0%} wall time to a default run (goal: at most +25%)")


if __name__ == "__main__":
    main()
