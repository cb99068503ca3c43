"""Benchmark: TF Transform's analyze-and-transform with the numeric features as the columns of
one block (components/transform.py: two analyzers for any number of them) against one mean and
one z-score analyzer per feature (what `preprocessing_fn` did before), side by side in one run.

`--features` numeric inputs (a fifth of their values missing) on `--rows` rows, through
`tft_beam.AnalyzeAndTransformDataset` on Beam's in-process runner, each way `--rounds` times
alternating; prints the median seconds of each, the ratio, and the largest difference between
the two ways' transformed values.

    python bench/transform.py [--features 64] [--rows 1800] [--rounds 1]
"""

from __future__ import annotations

import argparse
import logging
import os
import statistics
import tempfile
import time
import warnings

os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import numpy as np  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--features", type=int, default=64)
    parser.add_argument("--rows", type=int, default=1800)
    parser.add_argument("--rounds", type=int, default=1)
    args = parser.parse_args()
    warnings.filterwarnings("ignore")
    logging.getLogger().setLevel(logging.ERROR)

    import tensorflow as tf
    import tensorflow_transform as tft
    import tensorflow_transform.beam as tft_beam
    from tensorflow_transform.tf_metadata import dataset_metadata, schema_utils

    from tandem.components import transform

    rng = np.random.default_rng(0)
    names = [f"x{j:03d}" for j in range(args.features)]
    rows = [{name: [float(rng.normal(j, 1 + j))] if rng.random() > 0.2 else []
             for j, name in enumerate(names)} for _ in range(args.rows)]
    spec = {name: tf.io.VarLenFeature(tf.float32) for name in names}
    metadata = dataset_metadata.DatasetMetadata(schema_utils.schema_from_feature_spec(spec))
    plan = {"label": "y", "problem_type": "regression",
            "features": {name: {"kind": "numeric"} for name in names}}

    def per_feature(inputs):
        return {name: tft.scale_to_z_score(transform._numeric(inputs[name])) for name in names}

    def block(inputs):
        return transform.preprocessing_fn(inputs, {"plan": plan})

    def run(fn):
        start = time.perf_counter()
        with tft_beam.Context(temp_dir=tempfile.mkdtemp()):
            (out, _), _ = (rows, metadata) | tft_beam.AnalyzeAndTransformDataset(fn)
        return time.perf_counter() - start, np.array([[o[n] for n in names] for o in out])

    times = {"one block": [], "per feature": []}
    outputs = {}
    for _ in range(args.rounds):
        for way, fn in (("per feature", per_feature), ("one block", block)):
            seconds, outputs[way] = run(fn)
            times[way].append(seconds)
    old, new = (statistics.median(times[w]) for w in ("per feature", "one block"))
    print(f"{args.features} numeric features, {args.rows:,} rows, {args.rounds} round(s)")
    print(f"  per feature (two analyzers each): {old:7.1f} s")
    print(f"  one block (two analyzers):        {new:7.1f} s")
    print(f"  ratio: {old / new:.1f}x faster; largest difference between the two ways' "
          f"values {np.abs(outputs['per feature'] - outputs['one block']).max():.1e}")


if __name__ == "__main__":
    main()
