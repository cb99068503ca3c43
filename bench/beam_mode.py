"""Benchmark: Beam's DirectRunner in process (`in_memory`) against worker processes
(`multi_processing`, two workers) on the same CSV, the numbers behind `beam.direct_running_mode:
auto` (pipeline/beam.py).

The synthetic tabular CSV of bench/own_data.py at each size, the four-key config, `tandem run`
in a fresh output directory per run (no cache), the two modes alternating per round. Prints
each Beam-running component's time, the run's wall time, the ratio, and the CSV's size on disk
(what `auto` decides by).

    python bench/beam_mode.py [--rows 20000 200000] [--rounds 1]
"""

from __future__ import annotations

import argparse
import os
import re
import sys
import tempfile

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from own_data import tandem, write_dataset  # noqa: E402

MODES = ("in_memory", "multi_processing")
BEAM_COMPONENTS = ("CsvExampleGen", "StatisticsGen", "Transform", "Evaluator")


def one_run(home: str, mode: str) -> dict[str, float]:
    out = tempfile.mkdtemp(prefix="out-", dir=home)
    wall, stdout = tandem(home, "run", "--config", "config.yaml", "--set", f"output_dir={out}",
                          "--set", f"beam.direct_running_mode={mode}")
    steps = {m.group(1): float(m.group(2))
             for m in re.finditer(r"\[(\w+)\] finished in ([\d.]+)s", stdout)}
    return {"wall": wall, **steps}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, nargs="+", default=[20_000, 200_000])
    parser.add_argument("--rounds", type=int, default=1)
    args = parser.parse_args()
    for rows in args.rows:
        home = tempfile.mkdtemp(prefix=f"tandem-bench-beam-{rows}-")
        write_dataset(home, rows)
        size = os.path.getsize(os.path.join(home, "data", "rows.csv"))
        tandem(home, "schema", "propose", "--config", "config.yaml", "--out",
               "schemas/churn/schema.pbtxt")
        print(f"\n{rows:,} rows ({size / 2**20:.1f} MiB of CSV) in {home}", flush=True)
        results: dict[str, list[dict]] = {m: [] for m in MODES}
        for r in range(args.rounds):
            for mode in (MODES if r % 2 == 0 else MODES[::-1]):
                result = one_run(home, mode)
                results[mode].append(result)
                print(f"  round {r + 1}, {mode}: {result['wall']:.1f}s", flush=True)
        print(f"  {'step':<22} {'in_memory':>10} {'multi_proc':>11} {'ratio':>7}")
        beam = {m: 0.0 for m in MODES}
        for name in ["wall", *BEAM_COMPONENTS]:
            a, b = (float(np.median([x.get(name, float("nan")) for x in results[m]]))
                    for m in MODES)
            if name != "wall":
                beam["in_memory"] += a
                beam["multi_processing"] += b
            print(f"  {name:<22} {a:>9.1f}s {b:>10.1f}s {a / b if b else float('nan'):>6.2f}x")
        a, b = beam["in_memory"], beam["multi_processing"]
        print(f"  {'Beam components':<22} {a:>9.1f}s {b:>10.1f}s {a / b:>6.2f}x", flush=True)


if __name__ == "__main__":
    main()
