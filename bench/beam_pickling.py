"""Benchmark: Beam's pickler with tandem's remembered bz2 work and quiet dill trace
(components/beam_runtime.py) against Beam's own, on the same pipeline run.

The synthetic tabular CSV of bench/own_data.py, the four-key config, `tandem run` with the
model checks off (the Trainer runs no Beam) in a fresh output directory per run (no cache), the
two ways alternating per round; Beam's own is the same command with `quicker_pickling` made a
no-op before the CLI starts. Prints each Beam-running component's time (median of the rounds),
the run's wall time and the ratio.

    python bench/beam_pickling.py [--rows 500] [--rounds 2]
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from beam_mode import side_by_side  # noqa: E402
from own_data import step_times, tandem, write_dataset  # noqa: E402

WAYS = ("remembered", "beam's own")
PLAIN = ("import sys\nimport tandem.components.beam_runtime as runtime\n"
         "runtime.quicker_pickling = lambda: None\n"
         "from tandem.pipeline.cli import main\nsys.exit(main(sys.argv[1:]))")


def one_run(home: str, way: str) -> dict[str, float]:
    out = tempfile.mkdtemp(prefix="out-", dir=home)
    args = ["run", "--config", "config.yaml", "--set", f"output_dir={out}",
            "--set", "checks.enabled=false"]
    started = time.perf_counter()
    done = subprocess.run([sys.executable, "-c", PLAIN, *args] if way == WAYS[1]
                          else [os.path.join(os.path.dirname(sys.executable), "tandem"), *args],
                          cwd=home, capture_output=True, text=True)
    wall = time.perf_counter() - started
    if done.returncode != 0:
        sys.exit(f"{way} run failed ({done.returncode}):\n{done.stdout[-3000:]}\n"
                 f"{done.stderr[-2000:]}")
    return {"wall": wall, **step_times(done.stdout)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=500)
    parser.add_argument("--rounds", type=int, default=2)
    args = parser.parse_args()
    home = tempfile.mkdtemp(prefix=f"tandem-bench-pickling-{args.rows}-")
    write_dataset(home, args.rows)
    tandem(home, "schema", "propose", "--config", "config.yaml", "--out",
           "schemas/churn/schema.pbtxt")
    print(f"\n{args.rows:,} rows in {home}", flush=True)
    side_by_side(home, WAYS, ("remembered", "Beam own"), args.rounds, one_run)


if __name__ == "__main__":
    main()
