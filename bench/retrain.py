"""Benchmark: retraining from the request log against training on the same rows.

The same N generated listening rows two ways, each a whole `tandem` pipeline through push in
its own process and its own output directory, default Beam settings:

1. `tandem run`: the generator's decorated rows (TFRecord, labels in the rows);
2. `tandem retrain`: the same rows as the gateway logs them (one PredictionLog per request,
   the example as served, without its label) joined with a late-label CSV by request id
   (LogExampleGen), then the same pipeline.

The two runs split train and eval their own ways (ImportExampleGen by its hash, LogExampleGen
by request id), so their models and verdicts may differ; what is compared is the cost.

Prints each run's wall time and its components' times, and retrain / train (goal <= 1.2x).

    python bench/retrain.py [--rows 1000000]
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time

os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

TANDEM = [sys.executable, "-m", "tandem.pipeline.cli"]
FINISHED = re.compile(r"\[(\w+)\] finished in ([\d.]+)s$", re.M)


def prepare(work: str, rows: int) -> tuple[str, str, str]:
    """(rows directory, log directory, labels CSV) for the same `rows` generated rows."""
    from logged import RequestLog, served_examples

    from tandem.pipeline.datasets import listening

    data, logs = os.path.join(work, "data"), os.path.join(work, "logs")
    labels = os.path.join(work, "labels.csv")
    print(f"generating {rows:,} rows ...", flush=True)
    listening.generate(data, rows, seed=7)
    print("logging them as served, and their labels ...", flush=True)
    log = RequestLog(logs)
    with open(labels, "w") as f:
        f.write("request_id,label\n")
        for request_id, served, label in served_examples(data):
            log.write(request_id, served)
            f.write(f"{request_id},{label}\n")
    log.close()
    return data, logs, labels


def timed(name: str, args: list[str]) -> tuple[float, dict[str, float]]:
    """Wall time of one `tandem` command and the time of each component it ran. A model not
    blessed (exit 1) still ran every component; any other failure ends the benchmark."""
    print(f"{name} ...", flush=True)
    start = time.perf_counter()
    done = subprocess.run(TANDEM + args, cwd=ROOT, capture_output=True, text=True)
    wall = time.perf_counter() - start
    if done.returncode not in (0, 1):
        sys.exit(f"{name} exited {done.returncode}:\n{done.stdout[-3000:]}{done.stderr[-2000:]}")
    if done.returncode == 1:
        print(f"  {name}: the model was not blessed (exit 1); timed all the same", flush=True)
    return wall, {c: float(s) for c, s in FINISHED.findall(done.stdout)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    args = parser.parse_args()
    work = tempfile.mkdtemp(prefix="tandem-bench-retrain-")
    try:
        data, logs, labels = prepare(work, args.rows)
        train, train_parts = timed("tandem run (the rows)", [
            "run", "--config", "listening", "--set", f"data.location={data}",
            "--set", f"output_dir={work}/rows"])
        retrain, retrain_parts = timed("tandem retrain (the log + labels)", [
            "retrain", "--config", "listening", "--logs", logs, "--labels", labels,
            "--set", f"output_dir={work}/logs-out"])
        print(f"\n{args.rows:,} rows, each pipeline through push")
        components = list(dict.fromkeys([*train_parts, *retrain_parts]))
        width = max(len(c) for c in [*components, "component"])
        print(f"{'component':<{width}} {'rows':>9} {'log':>9}")
        for component in components:
            a, b = train_parts.get(component), retrain_parts.get(component)
            print(f"{component:<{width}} {'' if a is None else f'{a:.1f}s':>9} "
                  f"{'' if b is None else f'{b:.1f}s':>9}")
        print(f"{'wall':<{width}} {train:>8.1f}s {retrain:>8.1f}s   retrain/train "
              f"{retrain / train:.2f}x (goal <= 1.2x)")
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
