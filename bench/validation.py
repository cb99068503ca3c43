"""Benchmark: the gateway's compiled validator against TFDV's per-example validation
(`validate_instance`), on the same decorated listening examples and the curated schema's
SERVING environment.

Examples come from the data generator with drift profiles that break the schema
(impossible values, unknown countries and devices, missing features), so both validators
see clean and broken examples. Each is timed from the in-memory form it validates (a parsed
tf.Example for tandem, a one-row Arrow RecordBatch for TFDV), and again from serialized
bytes (tandem's parse, TFDV's decoder) so nothing is hidden. TFDV costs tens of milliseconds
per example, so by default it runs on the first `--tfdv-examples` of the set (the per-example
cost does not depend on the count); `--tfdv-examples 10000` runs it on all of them. The two
must flag the same examples; the run stops if they do not.

    python bench/validation.py [--examples 10000] [--tfdv-examples 500]
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time

os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
os.environ.setdefault("PYTHONWARNINGS", "ignore")
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import warnings  # noqa: E402

warnings.filterwarnings("ignore")

import tensorflow as tf  # noqa: E402

from tandem.pipeline.datasets import listening  # noqa: E402
from tandem.schemas import curated_schema_path, load_schema  # noqa: E402
from tandem.serving.gateway.validator import Validator  # noqa: E402

DRIFT = "impossible_values,new_country,new_device,missing_features"


def decorated_examples(n: int) -> list[bytes]:
    """n decorated serving examples (no label), half clean and half with drift."""
    out = []
    with tempfile.TemporaryDirectory() as tmp:
        for seed, drift in ((1, ""), (2, DRIFT)):
            listening.generate(tmp, n // 2, seed=seed, drift=listening.parse_drift(drift),
                               span=seed)
            path = os.path.join(tmp, f"span-{seed}", "data-00000-of-00001.tfrecord.gz")
            for record in tf.data.TFRecordDataset(path, compression_type="GZIP"):
                e = tf.train.Example.FromString(record.numpy())
                del e.features.feature[listening.LABEL]
                out.append(e.SerializeToString(deterministic=True))
    # Interleave so any prefix holds both kinds.
    half = len(out) // 2
    return [x for pair in zip(out[:half], out[half:], strict=False) for x in pair]


def per_example_us(fn, items, rounds: int = 3) -> float:
    """Median over rounds of the mean microseconds per item."""
    times = []
    for _ in range(rounds):
        start = time.perf_counter()
        for item in items:
            fn(item)
        times.append((time.perf_counter() - start) / len(items) * 1e6)
    return statistics.median(times)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--examples", type=int, default=10_000)
    parser.add_argument("--tfdv-examples", type=int, default=500)
    args = parser.parse_args()

    import tensorflow_data_validation as tfdv
    from tensorflow_data_validation.api.validation_api import validate_instance
    from tfx_bsl.coders import example_coder

    print(f"generating {args.examples:,} decorated listening examples "
          f"(half clean, half with drift: {DRIFT}) ...", flush=True)
    serialized = decorated_examples(args.examples)
    schema = load_schema(curated_schema_path("listening"))
    validator = Validator(schema)
    parsed = [tf.train.Example.FromString(s) for s in serialized]
    options = tfdv.StatsOptions(schema=schema)
    decoder = example_coder.ExamplesToRecordBatchDecoder()
    subset = serialized[:min(args.tfdv_examples, len(serialized))]
    batches = [decoder.DecodeBatch([s]) for s in subset]

    # Agreement first: a fast validator that flags other examples would be no answer.
    ours_flags = [bool(validator.validate(e)) for e in parsed[:len(subset)]]
    print(f"TFDV validate_instance on {len(subset):,} examples (about "
          f"{len(subset) * 0.045:.0f}s) ...", flush=True)
    tfdv_flags = []
    start = time.perf_counter()
    for batch in batches:
        anomalies = validate_instance(batch, options, environment="SERVING")
        tfdv_flags.append(bool(anomalies.anomaly_info))
    tfdv_us = (time.perf_counter() - start) / len(batches) * 1e6
    disagree = sum(a != b for a, b in zip(ours_flags, tfdv_flags, strict=True))
    if disagree:
        print(f"the validators disagree on {disagree} of {len(subset)} examples", file=sys.stderr)
        return 1
    start = time.perf_counter()
    for s in subset[:100]:
        validate_instance(decoder.DecodeBatch([s]), options, environment="SERVING")
    tfdv_bytes_us = (time.perf_counter() - start) / min(100, len(subset)) * 1e6

    ours_us = per_example_us(validator.validate, parsed)
    ours_bytes_us = per_example_us(lambda s: validator.validate(tf.train.Example.FromString(s)),
                                   serialized)
    batch_us = per_example_us(validator.validate_batch,
                              [parsed[i:i + 64] for i in range(0, len(parsed), 64)]) / 64
    flagged = sum(bool(validator.validate(e)) for e in parsed)

    print()
    print(f"per-example validation, {len(serialized):,} decorated examples "
          f"({flagged:,} flagged), curated listening schema, SERVING environment")
    print(f"{'':34}{'per example':>14}{'from bytes':>14}")
    print(f"{'tandem compiled validator':34}{ours_us:>11.1f} µs{ours_bytes_us:>11.1f} µs")
    print(f"{'  in batches of 64':34}{batch_us:>11.1f} µs")
    print(f"{'TFDV validate_instance':34}{tfdv_us:>11,.0f} µs{tfdv_bytes_us:>11,.0f} µs"
          f"   (first {len(subset):,})")
    print(f"{'ratio (TFDV / tandem)':34}{tfdv_us / ours_us:>12.0f}x{tfdv_bytes_us / ours_bytes_us:>13.0f}x")
    print(f"agreement: both flag the same {sum(ours_flags):,} of {len(subset):,} examples")
    return 0


if __name__ == "__main__":
    sys.exit(main())
