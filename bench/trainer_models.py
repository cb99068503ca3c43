"""Benchmark: the Trainer's run_fn with each architecture's Keras model reused by the next
training of that architecture (components/trainer_model.py, `Models`: traced once) against a
new model for every training (each traced anew: `Models.release` made a no-op), side by side
in one run.

bench/own_data.py's CSV at `--rows`, run once through `tandem run` up to Transform (the
Trainer's inputs), then run_fn on those artifacts, each way `--rounds` times alternating, each
in a new process as the pipeline runs it (within one process, later traces are cheaper than
the first), with the model checks on. Prints the median seconds of run_fn and of its
trainings (Keras `fit`), the number of trainings, and the ratio.

    python bench/trainer_models.py [--rows 500] [--rounds 2]
"""

from __future__ import annotations

import argparse
import glob
import logging
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import types
import warnings

os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

sys.path.insert(0, os.path.dirname(__file__))
from own_data import write_dataset  # noqa: E402


def _fn_args(home: str):
    """What TFX's Trainer executor hands run_fn, from the run's artifacts."""
    from tfx.components.trainer.fn_args_utils import DataAccessor
    from tfx.components.util import tfxio_utils
    from tfx.types import standard_artifacts

    from tandem.components.features import feature_plan
    from tandem.pipeline.config import load_config
    from tandem.pipeline.pipeline import trainer_config
    from tandem.schemas import load_schema

    config = load_config(os.path.join(home, "config.yaml"))
    schema_file = glob.glob(os.path.join(home, "schemas", "*", "schema.pbtxt"))[0]
    options = {name: o.as_options() for name, o in config.features.items()}
    plan = feature_plan(load_schema(schema_file), config.label, config.problem_type, options)
    root = glob.glob(os.path.join(home, "outputs", "*", "pipeline_root"))[0]
    examples = standard_artifacts.Examples()
    examples.uri = sorted(glob.glob(os.path.join(root, "CsvExampleGen", "examples", "*")))[-1]
    examples.split_names = '["train", "eval"]'
    factory = tfxio_utils.get_tf_dataset_factory_from_artifact([examples], [])
    return types.SimpleNamespace(
        train_files=[os.path.join(examples.uri, "Split-train", "*")],
        eval_files=[os.path.join(examples.uri, "Split-eval", "*")],
        data_accessor=DataAccessor(tf_dataset_factory=factory, record_batch_factory=None,
                                   data_view_decode_fn=None),
        transform_graph_path=sorted(glob.glob(os.path.join(root, "Transform",
                                                           "transform_graph", "*")))[-1],
        custom_config=trainer_config(config, plan), schema_path=schema_file,
        serving_model_dir=tempfile.mkdtemp())


def timed_run_fn(home: str) -> None:
    """One run_fn on `home`'s artifacts in this process: prints its seconds, its trainings'
    (Keras `fit`) seconds and their count. Shared by the Trainer's benchmarks."""
    import tensorflow as tf

    from tandem.components import trainer

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
    fn_args = _fn_args(home)
    start = time.perf_counter()
    trainer.run_fn(fn_args)
    print(time.perf_counter() - start, sum(fits), len(fits))
    shutil.rmtree(fn_args.serving_model_dir, ignore_errors=True)


def trainer_home(rows: int, prefix: str) -> str:
    """bench/own_data.py's CSV at `rows`, run through `tandem run` up to Transform."""
    home = tempfile.mkdtemp(prefix=prefix)
    write_dataset(home, rows)
    command = os.path.join(os.path.dirname(sys.executable), "tandem")
    for step in (["schema", "propose", "--config", "config.yaml", "--out",
                  "schemas/churn/schema.pbtxt"],
                 ["run", "--config", "config.yaml", "--until", "transform"]):
        done = subprocess.run([command, *step], cwd=home, capture_output=True, text=True)
        if done.returncode != 0:
            sys.exit(f"tandem {' '.join(step)} failed:\n{done.stdout[-2000:]}{done.stderr[-2000:]}")
    return home


def alternate(script: str, ways: tuple[str, ...], home: str,
              rounds: int) -> dict[str, tuple[float, float, int]]:
    """`script --child WAY HOME` for each way, `rounds` times alternating, each in a new
    process: per way the median run_fn seconds, the median trainings' seconds, and their
    count."""
    times: dict[str, list[tuple[float, float, int]]] = {way: [] for way in ways}
    for _ in range(rounds):
        for way in ways:
            done = subprocess.run([sys.executable, script, "--child", way, home],
                                  capture_output=True, text=True)
            if done.returncode != 0:
                sys.exit(f"run_fn failed ({way}):\n{done.stderr[-3000:]}")
            run, fit, n = done.stdout.split()[-3:]
            times[way].append((float(run), float(fit), int(n)))
    shutil.rmtree(home, ignore_errors=True)
    return {way: (statistics.median(r[0] for r in rows),
                  statistics.median(r[1] for r in rows), rows[0][2])
            for way, rows in times.items()}


def child(way: str, home: str) -> None:
    """One run_fn, in this new process, models reused or new each time."""
    from tandem.components.trainer_model import Models

    if way != "reused":
        Models.release = lambda self, model: None
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

    home = trainer_home(args.rows, "tandem-trainer-models-")
    medians = alternate(__file__, ("new each time", "reused"), home, args.rounds)
    print(f"the Trainer's run_fn on a {args.rows:,}-row CSV, model checks on, "
          f"{args.rounds} round(s) each way, alternating (median seconds)")
    for way, (run, fit, n) in medians.items():
        print(f"  {way:14s} run_fn {run:6.1f} s, of which {n} trainings {fit:5.1f} s")
    reused, new = medians["reused"][0], medians["new each time"][0]
    print(f"  ratio: run_fn {reused / new:.2f}x ({new - reused:+.1f} s saved per run)")


if __name__ == "__main__":
    main()
