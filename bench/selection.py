"""Benchmark: the Trainer's model selection margin on three seeds, the numbers behind "ship the
simplest adequate model" (components/model_selection.py).

For each truth and seed, 800 rows of four normal features and a binary label, the four-key
config, `tandem schema propose` and `tandem run --until train` in a fresh directory, as a user
runs them. The truths:

    linear  the label's log-odds are linear in the features: the linear model is the right
            one, and the configured model's gain over it is noise;
    xor     the label is the XOR of two signs: nothing linear can express it;
    mixed   linear log-odds plus a weaker interaction (x0 * x1): complexity pays a little.

Prints, per run, both AUCs, the gain (configured - linear), the margin (1.96 standard errors
at the eval split's n) and the choice, then per truth the gain in units of the margin: a
margin that is right keeps every linear-truth gain below 1 and puts every XOR gain far above.

    python bench/selection.py [--seeds 1 2 3] [--truths linear xor mixed] [--rows 800]
"""

from __future__ import annotations

import argparse
import csv
import os
import re
import sys
import tempfile

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from own_data import tandem  # noqa: E402

CHOSE = re.compile(r"\[Trainer\] chose (\w+): configured ([\d.]+) vs linear ([\d.]+) "
                   r"± ([\d.]+) (\w+) \(n=(\d+)\)")


def write_dataset(home: str, truth: str, rows: int, seed: int) -> None:
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(rows, 4))
    if truth == "linear":
        logit = 1.5 * x[:, 0] - x[:, 1] + 0.5 * x[:, 2]
    elif truth == "mixed":
        logit = 1.0 * x[:, 0] - 0.7 * x[:, 1] + 1.2 * x[:, 0] * x[:, 1]
    else:
        logit = None
    if logit is None:
        y = ((x[:, 0] > 0) ^ (x[:, 1] > 0)) ^ (rng.random(rows) < 0.05)
    else:
        y = rng.random(rows) < 1 / (1 + np.exp(-logit))
    os.makedirs(os.path.join(home, "data"), exist_ok=True)
    with open(os.path.join(home, "data", "rows.csv"), "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["a", "b", "c", "d", "y"])
        for row, t in zip(x, y, strict=True):
            w.writerow([f"{v:.5f}" for v in row] + [int(t)])
    with open(os.path.join(home, "config.yaml"), "w") as f:
        f.write(f"name: {truth}\ndata: {{location: data}}\nlabel: y\n"
                "problem_type: binary_classification\n")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[1, 2, 3])
    parser.add_argument("--truths", nargs="+", default=["linear", "xor", "mixed"])
    parser.add_argument("--rows", type=int, default=800)
    args = parser.parse_args()
    ratios: dict[str, list[float]] = {t: [] for t in args.truths}
    print(f"{'truth':<7} {'seed':>4} {'configured':>10} {'linear':>7} {'gain':>8} "
          f"{'margin':>7} {'n':>4}  chose", flush=True)
    for truth in args.truths:
        for seed in args.seeds:
            home = tempfile.mkdtemp(prefix=f"tandem-bench-select-{truth}-{seed}-")
            write_dataset(home, truth, args.rows, seed)
            tandem(home, "schema", "propose", "--config", "config.yaml", "--out",
                   f"schemas/{truth}/schema.pbtxt")
            _, stdout = tandem(home, "run", "--config", "config.yaml", "--until", "train")
            m = CHOSE.search(stdout)
            if not m:
                sys.exit(f"no '[Trainer] chose' line for {truth}, seed {seed}:\n{stdout[-2000:]}")
            chose, configured, linear, margin = m.group(1), *map(float, m.group(2, 3, 4))
            gain = configured - linear
            ratios[truth].append(gain / margin)
            print(f"{truth:<7} {seed:>4} {configured:>10.4f} {linear:>7.4f} {gain:>+8.4f} "
                  f"{margin:>7.4f} {m.group(6):>4}  {chose}", flush=True)
    print("\ngain / margin per truth (configured ships above 1):")
    for truth, values in ratios.items():
        print(f"  {truth:<7} " + "  ".join(f"{v:+.2f}" for v in values))


if __name__ == "__main__":
    main()
