"""Benchmark: a wide statistics report (two datasets of `--features` features, half numeric,
half categorical, the same as tests/reports/test_stats_report.py's) drawn with its charts in
one process against drawn together by worker processes (reports/charts.py draw_together:
`python -m tandem.reports.chart_worker`), side by side in one run, alternating; the two pages
are checked to be the same bytes.

    python bench/report_charts.py [--features 200] [--rows 2000] [--rounds 2]
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
import warnings

os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--features", type=int, default=200)
    parser.add_argument("--rows", type=int, default=2000)
    parser.add_argument("--rounds", type=int, default=2)
    args = parser.parse_args()
    warnings.filterwarnings("ignore")

    from tandem.pipeline.statistics_report import statistics_page
    from tandem.reports import charts
    from tests.reports.test_stats_report import wide_statistics

    print(f"statistics of two datasets of {args.features} features, {args.rows:,} rows ...",
          flush=True)
    a = wide_statistics(args.features, args.rows, seed=1)
    b = wide_statistics(args.features, args.rows, seed=2, shift=0.5)
    pool_min = charts.POOL_MIN_CHARTS
    times: dict[str, list[float]] = {"one process": [], "workers": []}
    pages: dict[str, str] = {}
    for round_ in range(args.rounds):
        for way, minimum in (("one process", 10**9), ("workers", pool_min)):
            charts.POOL_MIN_CHARTS = minimum
            start = time.perf_counter()
            pages[way] = statistics_page(a, b, names=("training", "serving")).render()
            times[way].append(time.perf_counter() - start)
            print(f"round {round_ + 1}, {way}: {times[way][-1]:.1f} s", flush=True)
    charts.POOL_MIN_CHARTS = pool_min
    same = pages["one process"] == pages["workers"]
    one, pool = (statistics.median(times[w]) for w in ("one process", "workers"))
    print(f"\n{args.features}-feature comparison page ({pages['workers'].count('<svg')} charts), "
          f"median of {args.rounds}: one process {one:.1f} s, "
          f"{charts._workers(pool_min)} worker processes {pool:.1f} s: {pool / one:.2f}x; the same "
          f"bytes: {same}")


if __name__ == "__main__":
    main()
