"""Benchmark: a user's own CSV from nothing to a pushed model, and what the model selection and
the model checks cost it.

A synthetic tabular CSV (six numeric and two categorical columns, a binary label with a linear
part and an interaction) at each size, run as a newcomer runs it: the four-key config (name,
data, label, problem type), `tandem schema propose`, `tandem run`, default Beam settings, each
run in a fresh output directory (no cache). Per size, twice in alternating order: the default
(the linear model trained beside the configured one, the checks on) and `checks.enabled=false`.
Prints the wall time of `run`, each component's time, and the ratio.

    python bench/own_data.py [--rows 500 100000] [--rounds 1]
"""

from __future__ import annotations

import argparse
import csv
import os
import re
import subprocess
import sys
import tempfile
import time

import numpy as np

os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
os.environ.setdefault("PYTHONWARNINGS", "ignore::FutureWarning,ignore::DeprecationWarning")


def write_dataset(home: str, rows: int, seed: int = 0) -> None:
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(rows, 6))
    plan = rng.choice(["basic", "plus", "pro"], size=rows)
    region = rng.choice([f"r{i}" for i in range(12)], size=rows)
    logit = 1.2 * x[:, 0] - 0.8 * x[:, 1] + 1.5 * x[:, 2] * x[:, 3] + 0.6 * (plan == "pro")
    y = (rng.random(rows) < 1 / (1 + np.exp(-logit))).astype(int)
    os.makedirs(os.path.join(home, "data"), exist_ok=True)
    with open(os.path.join(home, "data", "rows.csv"), "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow([f"x{i}" for i in range(6)] + ["plan", "region", "churned"])
        for i in range(rows):
            writer.writerow([f"{v:.4f}" for v in x[i]] + [plan[i], region[i], y[i]])
    with open(os.path.join(home, "config.yaml"), "w") as f:
        f.write("name: churn\ndata: {location: data}\nlabel: churned\n"
                "problem_type: binary_classification\n")


def tandem(home: str, *args: str) -> tuple[float, str]:
    started = time.perf_counter()
    command = os.path.join(os.path.dirname(sys.executable), "tandem")  # as a user runs it
    done = subprocess.run([command, *args], cwd=home, capture_output=True, text=True)
    wall = time.perf_counter() - started
    if done.returncode != 0:
        sys.exit(f"tandem {' '.join(args)} failed ({done.returncode}):\n{done.stdout[-3000:]}"
                 f"\n{done.stderr[-2000:]}")
    return wall, done.stdout


def step_times(stdout: str) -> dict[str, float]:
    """Each component's seconds, from the run's own `[Component] finished in Ns` lines."""
    return {m.group(1): float(m.group(2))
            for m in re.finditer(r"\[(\w+)\] finished in ([\d.]+)s", stdout)}


def one_run(home: str, checks: bool) -> dict[str, float]:
    out = tempfile.mkdtemp(prefix="out-", dir=home)
    args = ["run", "--config", "config.yaml", "--set", f"output_dir={out}"]
    if not checks:
        args += ["--set", "checks.enabled=false"]
    wall, stdout = tandem(home, *args)
    steps = step_times(stdout)
    chose = re.search(r"\[Trainer\] chose (\w+)", stdout)
    return {"wall": wall, **steps, "chose": chose.group(1) if chose else "?"}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, nargs="+", default=[500, 100_000])
    parser.add_argument("--rounds", type=int, default=1)
    args = parser.parse_args()
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    sys.path.insert(0, root)
    for rows in args.rows:
        home = tempfile.mkdtemp(prefix=f"tandem-bench-own-{rows}-")
        write_dataset(home, rows)
        propose, _ = tandem(home, "schema", "propose", "--config", "config.yaml", "--out",
                            "schemas/churn/schema.pbtxt")
        print(f"\n{rows:,} rows in {home}: schema propose {propose:.1f}s", flush=True)
        results: dict[bool, list[dict]] = {True: [], False: []}
        for r in range(args.rounds):
            for checks in ((True, False) if r % 2 == 0 else (False, True)):
                result = one_run(home, checks)
                results[checks].append(result)
                print(f"  round {r + 1}, {'default' if checks else 'checks off'}: "
                      f"{result['wall']:.1f}s (Trainer {result.get('Trainer', float('nan')):.1f}s,"
                      f" chose {result['chose']})", flush=True)
        on, off = results[True], results[False]
        names = [k for k in on[0] if k not in ("wall", "chose")]
        print(f"  {'step':<20} {'default':>9} {'checks off':>11} {'ratio':>7}")
        for name in ["wall", *names]:
            a = float(np.median([x.get(name, float("nan")) for x in on]))
            b = float(np.median([x.get(name, float("nan")) for x in off]))
            print(f"  {name:<20} {a:>8.1f}s {b:>10.1f}s {a / b if b else float('nan'):>6.2f}x")
        total = float(np.median([x["wall"] for x in on])) + propose
        print(f"  CSV to a pushed model (schema propose + run, default): {total:.1f}s")


if __name__ == "__main__":
    main()
