"""Benchmark: TFDV's equi-width histogram made from arrays (components/histograms.py) against
TFDV's own `generate_equi_width_histogram`, side by side in one run, alternating:

- the function alone, on a sketch of 10,001 quantile boundaries (100 x 100 buckets, tandem's
  options) into 20 buckets, as TFDV's basic statistics call it once per numeric feature per
  dataset;
- TFDV's whole statistics of an in-memory table of `--features` numeric features and
  `--rows` rows, with tandem's options, both ways (the same bytes, checked).

    python bench/histograms.py [--features 20] [--rows 2000] [--rounds 5]
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
import warnings

os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

TFDVS = "TFDV's"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--features", type=int, default=20)
    parser.add_argument("--rows", type=int, default=2000)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    warnings.filterwarnings("ignore")

    import numpy as np
    import pyarrow as pa
    import tensorflow_data_validation as tfdv
    from tensorflow_data_validation.statistics.stats_impl import generate_statistics_in_memory
    from tensorflow_data_validation.utils import quantiles_util

    from tandem.components import histograms

    tfdvs = histograms.TFDVS
    rng = np.random.default_rng(0)
    values = np.sort(rng.lognormal(0, 1, size=50_000))
    quantiles = np.quantile(values, np.linspace(0, 1, 10_001))
    counts = np.searchsorted(values, quantiles, side="right").astype(np.float64)
    call = (quantiles, counts, float(values[0]), float(values[-1]), 20, 0)
    ways = {TFDVS: tfdvs, "from arrays": histograms.equi_width_histogram}
    per_call: dict[str, list[float]] = {w: [] for w in ways}
    for _ in range(args.rounds):
        for way, fn in ways.items():
            start = time.perf_counter()
            for _ in range(20):
                fn(*call)
            per_call[way].append((time.perf_counter() - start) / 20)
    assert tfdvs(*call) == histograms.equi_width_histogram(*call)

    table = pa.RecordBatch.from_arrays(
        [pa.array([[v] for v in rng.normal(i, 1 + i % 3, size=args.rows)])
         for i in range(args.features)], [f"x{i}" for i in range(args.features)])
    options = tfdv.StatsOptions(num_quantiles_histogram_buckets=100, num_histogram_buckets=20)
    whole: dict[str, list[float]] = {w: [] for w in ways}
    outputs = {}
    for _ in range(args.rounds):
        for way, fn in ways.items():
            quantiles_util.generate_equi_width_histogram = fn
            start = time.perf_counter()
            outputs[way] = generate_statistics_in_memory(table, options)
            whole[way].append(time.perf_counter() - start)
    quantiles_util.generate_equi_width_histogram = tfdvs
    same = len({o.SerializeToString(deterministic=True) for o in outputs.values()}) == 1

    ms = {w: statistics.median(t) * 1000 for w, t in per_call.items()}
    sec = {w: statistics.median(t) for w, t in whole.items()}
    print(f"TFDV's equi-width histogram, 10,001 quantile boundaries into 20 buckets, median of "
          f"{args.rounds} rounds, alternating")
    for way in ways:
        print(f"  {way:12s} {ms[way]:7.2f} ms per call")
    print(f"  ratio: {ms['from arrays'] / ms[TFDVS]:.3f}x the time "
          f"({ms[TFDVS] / ms['from arrays']:.0f}x faster)")
    print(f"TFDV statistics of {args.rows:,} rows x {args.features} numeric features "
          f"(tandem's options), {'the same bytes' if same else 'DIFFERENT bytes'}")
    for way in ways:
        print(f"  {way:12s} {sec[way]:6.3f} s")
    print(f"  ratio: {sec['from arrays'] / sec[TFDVS]:.2f}x the time")
    if not same:
        raise SystemExit(1)


if __name__ == "__main__":
    main()
