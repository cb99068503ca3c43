"""Benchmark: the start-up a `tandem run` process pays for importing TFX, with tandem's view of
TFX's API (components/tfx_api.py) against `from tfx import v1`, which also imports TFX's Google
Cloud extensions.

Each way in a fresh Python process, alternating, `--rounds` times: the modules a run imports to
build and run its DAG (the pipeline, the Trainer's module, the Evaluator, the gates, every
executor LocalDagRunner loads); the other way imports the same and then `tfx.v1`. Prints the
median wall time of each and the difference.

    python bench/imports.py [--rounds 5]
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
RUN = """
from tandem.pipeline import pipeline, runner, monitoring, promotion
from tandem.components import trainer, trainer_executor, evaluator, slice_gate, validation_gate
from tfx.components.example_gen.csv_example_gen import executor as csv
from tfx.components.statistics_gen import executor as stats
from tfx.components.example_validator import executor as validator
from tfx.components.transform import executor as transform
from tfx.components.pusher import executor as pusher
"""
WAYS = {"tandem's tfx_api": RUN, "and tfx.v1": RUN + "from tfx import v1\n"}


def one(code: str) -> float:
    env = {**os.environ, "TF_USE_LEGACY_KERAS": "1", "TF_CPP_MIN_LOG_LEVEL": "3"}
    started = time.perf_counter()
    done = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=env,
                          capture_output=True, text=True)
    if done.returncode != 0:
        sys.exit(done.stderr[-2000:])
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    times: dict[str, list[float]] = {w: [] for w in WAYS}
    for r in range(args.rounds):
        for way in (list(WAYS) if r % 2 == 0 else list(WAYS)[::-1]):
            times[way].append(one(WAYS[way]))
    ours, v1 = (float(np.median(times[w])) for w in WAYS)
    for way, t in times.items():
        print(f"  {way:<18} median {np.median(t):5.2f}s  ({', '.join(f'{x:.2f}' for x in t)})")
    print(f"  importing tfx.v1 as well adds {v1 - ours:.2f}s to a run's start-up "
          f"({v1 / ours:.2f}x)", flush=True)


if __name__ == "__main__":
    main()
