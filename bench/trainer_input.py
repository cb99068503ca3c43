"""Benchmark: the Trainer's run_fn with each small split sent through the Transform graph once
and kept in memory for every training of the run (components/trainer_model.py,
`IN_MEMORY_VALUES`) against the split streamed through the graph on every pass
(`IN_MEMORY_VALUES = 0`), side by side in one run.

bench/own_data.py's CSV at `--rows`, run once through `tandem run` up to Transform (the
Trainer's inputs), then run_fn on those artifacts, each way `--rounds` times alternating, each
in a new process as the pipeline runs it, with the model checks on. Prints the median seconds
of run_fn and of its trainings (Keras `fit`, each with an evaluation after every epoch), and
the ratio.

    python bench/trainer_input.py [--rows 500] [--rounds 2]
"""

from __future__ import annotations

import argparse
import logging
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import warnings

os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

sys.path.insert(0, os.path.dirname(__file__))
from own_data import write_dataset  # noqa: E402
from trainer_models import _fn_args  # noqa: E402

WAYS = ("streamed", "in memory")


def child(way: str, home: str) -> None:
    """One run_fn, in this new process: prints its seconds, its trainings' seconds and count."""
    import tensorflow as tf

    from tandem.components import trainer, trainer_model

    logging.getLogger().setLevel(logging.ERROR)
    for name in ("absl", "tensorflow"):
        logging.getLogger(name).setLevel(logging.ERROR)
    fits: list[float] = []
    real_fit = tf.keras.Model.fit

    def timed_fit(self, *a, **k):
        start = time.perf_counter()
        try:
            return real_fit(self, *a, **k)
        finally:
            fits.append(time.perf_counter() - start)

    tf.keras.Model.fit = timed_fit
    if way == "streamed":
        trainer_model.IN_MEMORY_VALUES = 0
    fn_args = _fn_args(home)
    start = time.perf_counter()
    trainer.run_fn(fn_args)
    print(time.perf_counter() - start, sum(fits), len(fits))
    shutil.rmtree(fn_args.serving_model_dir, ignore_errors=True)


def main() -> None:
    if sys.argv[1:2] == ["--child"]:
        warnings.filterwarnings("ignore")
        return child(sys.argv[2], sys.argv[3])
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=500)
    parser.add_argument("--rounds", type=int, default=2)
    args = parser.parse_args()
    warnings.filterwarnings("ignore")

    home = tempfile.mkdtemp(prefix="tandem-trainer-input-")
    write_dataset(home, args.rows)
    command = os.path.join(os.path.dirname(sys.executable), "tandem")
    for step in (["schema", "propose", "--config", "config.yaml", "--out",
                  "schemas/churn/schema.pbtxt"],
                 ["run", "--config", "config.yaml", "--until", "transform"]):
        done = subprocess.run([command, *step], cwd=home, capture_output=True, text=True)
        if done.returncode != 0:
            sys.exit(f"tandem {' '.join(step)} failed:\n{done.stdout[-2000:]}{done.stderr[-2000:]}")

    times: dict[str, list[tuple[float, float, int]]] = {way: [] for way in WAYS}
    for _ in range(args.rounds):
        for way in WAYS:
            done = subprocess.run([sys.executable, __file__, "--child", way, home],
                                  capture_output=True, text=True)
            if done.returncode != 0:
                sys.exit(f"run_fn failed ({way}):\n{done.stderr[-3000:]}")
            run, fit, n = done.stdout.split()[-3:]
            times[way].append((float(run), float(fit), int(n)))
    shutil.rmtree(home, ignore_errors=True)

    print(f"the Trainer's run_fn on a {args.rows:,}-row CSV, model checks on, "
          f"{args.rounds} round(s) each way, alternating (median seconds)")
    medians = {}
    for way, rows in times.items():
        run, fit = (statistics.median(r[i] for r in rows) for i in (0, 1))
        medians[way] = (run, fit)
        print(f"  {way:10s} run_fn {run:6.1f} s, of which {rows[0][2]} trainings {fit:5.1f} s")
    (run_a, fit_a), (run_b, fit_b) = medians["in memory"], medians["streamed"]
    print(f"  ratio: run_fn {run_a / run_b:.2f}x ({run_b - run_a:+.1f} s saved per run), "
          f"trainings {fit_a / fit_b:.2f}x")


if __name__ == "__main__":
    main()
