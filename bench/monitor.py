"""Benchmark: monitoring throughput against TFDV's own statistics, and the report's weight.

1. `tandem monitor` over N logged requests (one decorated example each, PredictionLogs in
   GZIP TFRecords as the gateway writes them): decoding the log, windowing (10 windows),
   TFDV statistics per window, schema/drift checks, the report.
2. TFDV's `generate_statistics_from_tfrecord` over the same examples stored plainly (GZIP
   TFRecord of tf.Examples), with the same statistics options, on the same runner.
3. The statistics report of 200 features (two datasets side by side): its size, and how long
   headless Chromium takes to load it.

Both jobs run on DirectRunner in_memory, one after the other, in this process.

    python bench/monitor.py [--records 1000000]
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import time

os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

import tensorflow as tf  # noqa: E402

BEAM = ["--direct_running_mode=in_memory"]


def plain_and_logged(work: str, n: int) -> tuple[str, str]:
    """N served examples (no label) as a plain TFRecord and as a request log."""
    from logged import RequestLog, served_examples

    from tandem.pipeline.datasets import listening

    data = os.path.join(work, "data")
    print(f"generating {n:,} examples ...", flush=True)
    listening.generate(data, n, seed=5)
    plain = os.path.join(work, "plain.tfrecord.gz")
    logs = os.path.join(work, "logs")
    log = RequestLog(logs)
    options = tf.io.TFRecordOptions(compression_type="GZIP")
    print("writing them plainly and as a request log ...", flush=True)
    with tf.io.TFRecordWriter(plain, options=options) as out:
        for request_id, served, _ in served_examples(data):
            out.write(served)
            log.write(request_id, served)
    log.close()
    return plain, logs


def report_weight(work: str) -> tuple[float, float]:
    """(size in MB, Chromium load ms) of a 200-feature side-by-side statistics report."""
    sys.path.insert(0, os.path.join(ROOT, "tests"))
    from tandem.pipeline.statistics_report import statistics_page
    from tests import browser
    from tests.reports.test_stats_report import wide_statistics

    a = wide_statistics(200, 2000, seed=1)
    b = wide_statistics(200, 2000, seed=2, shift=0.5)
    path = statistics_page(a, b, names=("training", "serving")).write(
        os.path.join(work, "wide.html"))
    loads = [browser.render(path, os.path.join(work, "wide.png")).load_ms for _ in range(3)]
    return os.path.getsize(path) / 1e6, sorted(loads)[1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--records", type=int, default=1_000_000)
    args = parser.parse_args()
    import tensorflow_data_validation as tfdv
    from apache_beam.options.pipeline_options import PipelineOptions

    from tandem.pipeline.config import load_config
    from tandem.pipeline.pipeline import statistics_options
    from tandem.pipeline.traffic_checks import run_monitor

    work = tempfile.mkdtemp(prefix="tandem-bench-monitor-")
    try:
        plain, logs = plain_and_logged(work, args.records)
        print("TFDV generate_statistics_from_tfrecord ...", flush=True)
        start = time.perf_counter()
        tfdv.generate_statistics_from_tfrecord(
            plain, stats_options=statistics_options(),
            pipeline_options=PipelineOptions(BEAM))
        stock = time.perf_counter() - start
        print("tandem monitor ...", flush=True)
        config = load_config("listening", [f"output_dir={work}/out"])
        start = time.perf_counter()
        summary = run_monitor(logs, config, os.path.join(work, "monitor"),
                              window_records=max(args.records // 10, 1), beam_args=BEAM)
        ours = time.perf_counter() - start
        size_mb, load_ms = report_weight(work)
        n = args.records
        print(f"\nmonitoring {n:,} logged requests ({len(summary['windows'])} windows)")
        print(f"{'TFDV statistics over the plain examples':<46} {n / stock:>10,.0f} ex/s "
              f"({stock:.1f}s)")
        print(f"{'tandem monitor over the request log':<46} {n / ours:>10,.0f} ex/s "
              f"({ours:.1f}s)   ours {stock / ours:.2f}x")
        print(f"200-feature statistics report: {size_mb:.2f} MB, loads in headless Chromium "
              f"in {load_ms:.0f} ms (median of 3)")
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
