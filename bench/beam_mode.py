"""Benchmark: Beam's DirectRunner in process (`in_memory`) against worker processes
(`multi_processing`, a worker per core) on the same CSV, the numbers behind `beam.direct_running_mode:
auto` (pipeline/beam.py); with `--compare workers`, in process with one worker against two
(threads), the numbers behind `beam.direct_num_workers: 0` (one in process).

The synthetic tabular CSV of bench/own_data.py at each size, the four-key config, `tandem run`
in a fresh output directory per run (no cache), the two modes alternating per round. Prints
each Beam-running component's time, the run's wall time, the ratio, and the CSV's size on disk
(what `auto` decides by).

    python bench/beam_mode.py [--rows 20000 200000] [--rounds 1] [--compare modes|workers]
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
from collections.abc import Callable

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from own_data import step_times, tandem, write_dataset  # noqa: E402

MODES = ("in_memory", "multi_processing")
BEAM_COMPONENTS = ("CsvExampleGen", "StatisticsGen", "Transform", "Evaluator")


def one_run(home: str, mode: str, workers: int = 0) -> dict[str, float]:
    out = tempfile.mkdtemp(prefix="out-", dir=home)
    wall, stdout = tandem(home, "run", "--config", "config.yaml", "--set", f"output_dir={out}",
                          "--set", f"beam.direct_running_mode={mode}",
                          "--set", f"beam.direct_num_workers={workers}")
    return {"wall": wall, **step_times(stdout)}


def in_process(home: str, workers: str) -> dict[str, float]:
    return one_run(home, "in_memory", int(workers))


def side_by_side(home: str, ways: tuple[str, str], labels: tuple[str, str], rounds: int,
                 run: Callable[[str, str], dict[str, float]]) -> None:
    """`run(home, way)` for both ways, alternating per round; prints each round's wall time,
    then the wall time and each Beam-running component's (median of the rounds), the ratio
    of the first way to the second, and the Beam components' sum."""
    results: dict[str, list[dict]] = {w: [] for w in ways}
    for r in range(rounds):
        for way in (ways if r % 2 == 0 else ways[::-1]):
            result = run(home, way)
            results[way].append(result)
            print(f"  round {r + 1}, {way}: {result['wall']:.1f}s", flush=True)
    width = [max(10, len(label)) for label in labels]
    print(f"  {'step':<22} {labels[0]:>{width[0]}} {labels[1]:>{width[1] + 1}} {'ratio':>7}")
    beam = [0.0, 0.0]
    for name in ["wall", *BEAM_COMPONENTS]:
        a, b = (float(np.median([x.get(name, float("nan")) for x in results[w]]))
                for w in ways)
        if name != "wall":
            beam = [beam[0] + a, beam[1] + b]
        print(f"  {name:<22} {a:>{width[0] - 1}.1f}s {b:>{width[1]}.1f}s "
              f"{a / b if b else float('nan'):>6.2f}x")
    a, b = beam
    print(f"  {'Beam components':<22} {a:>{width[0] - 1}.1f}s {b:>{width[1]}.1f}s "
          f"{a / b:>6.2f}x", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, nargs="+", default=[20_000, 200_000])
    parser.add_argument("--rounds", type=int, default=1)
    parser.add_argument("--compare", choices=("modes", "workers"), default="modes")
    args = parser.parse_args()
    for rows in args.rows:
        home = tempfile.mkdtemp(prefix=f"tandem-bench-beam-{rows}-")
        write_dataset(home, rows)
        size = os.path.getsize(os.path.join(home, "data", "rows.csv"))
        tandem(home, "schema", "propose", "--config", "config.yaml", "--out",
               "schemas/churn/schema.pbtxt")
        print(f"\n{rows:,} rows ({size / 2**20:.1f} MiB of CSV) in {home}", flush=True)
        if args.compare == "modes":
            side_by_side(home, MODES, ("in_memory", "multi_proc"), args.rounds, one_run)
        else:
            side_by_side(home, ("1", "2"), ("1 worker", "2 workers"), args.rounds, in_process)


if __name__ == "__main__":
    main()
