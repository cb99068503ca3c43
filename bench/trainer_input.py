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
import os
import sys
import warnings

os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

sys.path.insert(0, os.path.dirname(__file__))
from trainer_models import alternate, timed_run_fn, trainer_home  # noqa: E402

WAYS = ("streamed", "in memory")


def child(way: str, home: str) -> None:
    """One run_fn, in this new process, its splits streamed or kept in memory."""
    from tandem.components import trainer_model

    if way == "streamed":
        trainer_model.IN_MEMORY_VALUES = 0
    timed_run_fn(home)


def main() -> None:
    if sys.argv[1:2] == ["--child"]:
        warnings.filterwarnings("ignore")
        return child(sys.argv[2], sys.argv[3])
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=500)
    parser.add_argument("--rounds", type=int, default=2)
    args = parser.parse_args()
    warnings.filterwarnings("ignore")

    home = trainer_home(args.rows, "tandem-trainer-input-")
    medians = alternate(__file__, WAYS, home, args.rounds)
    print(f"the Trainer's run_fn on a {args.rows:,}-row CSV, model checks on, "
          f"{args.rounds} round(s) each way, alternating (median seconds)")
    for way, (run, fit, n) in medians.items():
        print(f"  {way:10s} run_fn {run:6.1f} s, of which {n} trainings {fit:5.1f} s")
    (run_a, fit_a, _), (run_b, fit_b, _) = medians["in memory"], medians["streamed"]
    print(f"  ratio: run_fn {run_a / run_b:.2f}x ({run_b - run_a:+.1f} s saved per run), "
          f"trainings {fit_a / fit_b:.2f}x")


if __name__ == "__main__":
    main()
