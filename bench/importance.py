"""Benchmark: the importance check (Data 2) on a model with many inputs, its shuffles scored
stacked, many per model call (components/importance.py), against one model call per shuffle
(the same function with SHUFFLE_ROWS equal to the sample's size), side by side in one run.

A Keras model of `--inputs` numeric inputs (two carry the label) trained briefly, an eval
sample of `--examples`, 20 shuffles per group, each way `--rounds` times alternating; prints
the median seconds of each, the ratio, and whether the two gave the same report.

    python bench/importance.py [--inputs 64] [--examples 360] [--rounds 2]
"""

from __future__ import annotations

import argparse
import os
import time

os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import numpy as np  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--inputs", type=int, default=64)
    parser.add_argument("--examples", type=int, default=360)
    parser.add_argument("--rounds", type=int, default=2)
    args = parser.parse_args()

    import tensorflow as tf

    from tandem.components import importance as imp
    from tandem.components import model_checks as mc
    from tandem.components import sampling_error as se

    rng = np.random.default_rng(0)
    n = args.examples
    x = {f"x{i:03d}": rng.normal(size=n).astype("float32") for i in range(args.inputs)}
    y = (x["x000"] + x["x001"] + rng.normal(size=n) > 0).astype("float32")
    tf.keras.utils.set_random_seed(0)
    inputs = {k: tf.keras.Input((), name=k) for k in x}
    h = tf.keras.layers.Concatenate()([tf.keras.layers.Reshape((1,))(v)
                                       for v in inputs.values()])
    h = tf.keras.layers.Dense(32, activation="relu")(h)
    model = tf.keras.Model(inputs, tf.keras.layers.Dense(1, activation="sigmoid")(h))
    model.compile("adam", "binary_crossentropy")
    model.fit(x, y, epochs=3, verbose=0)
    sample = mc.Sample(x, y, [])
    stacked_rows = imp.SHUFFLE_ROWS
    ways = {"stacked": stacked_rows, "one call per shuffle": n}
    times: dict[str, list[float]] = {w: [] for w in ways}
    reports = {}
    for r in range(args.rounds):
        for way in (list(ways) if r % 2 == 0 else list(ways)[::-1]):
            imp.SHUFFLE_ROWS = ways[way]
            started = time.perf_counter()
            report = imp.importance(model, sample, se.auc, True, repeats=20, seed=0,
                                    name="auc")
            times[way].append(time.perf_counter() - started)
            report.pop("seconds")
            reports[way] = report
    imp.SHUFFLE_ROWS = stacked_rows
    ours, theirs = (float(np.median(times[w])) for w in ways)
    print(f"{args.inputs} inputs, {n} eval examples, 20 shuffles per group:")
    for way, t in times.items():
        print(f"  {way:<22} median {np.median(t):6.1f}s  ({', '.join(f'{s:.1f}' for s in t)})")
    print(f"  stacked vs one call per shuffle: {ours / theirs:.3f}x "
          f"({theirs / ours:.1f} times faster); same report: "
          f"{reports['stacked'] == reports['one call per shuffle']}", flush=True)


if __name__ == "__main__":
    main()
