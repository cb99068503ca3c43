"""`tandem features`: the feature sources the gateway decorates requests from."""

from __future__ import annotations

import argparse
import os

from tandem.pipeline.cli.flags import add_group


def cmd_features_load(args: argparse.Namespace) -> int:
    import time

    from tandem.serving.gateway.sources import copy_to_redis

    start = time.monotonic()

    def progress(table: str, n: int) -> None:
        print(f"load: {table}: {n:,} rows", flush=True)

    counts = copy_to_redis(args.sqlite, args.to, prefix=args.prefix, progress=progress)
    tables = ", ".join(f"{t} ({n:,} rows)" for t, n in counts.items())
    print(f"loaded {tables} into {args.to} in {time.monotonic() - start:.1f}s")
    return 0


def cmd_features_diff(args: argparse.Namespace) -> int:
    import time

    from tandem.components.source_diff import summary
    from tandem.pipeline.feature_checks import DIFF_HTML, DIFF_JSON, run_features_diff

    start = time.monotonic()
    print(f"diff: reading {args.source_from} and {args.to} ...", flush=True)
    tables = [t for t in args.tables.split(",") if t] if args.tables else None
    report = run_features_diff(args.source_from, args.to, args.out, tables)
    for line in summary(report):
        print(line)
    if args.out:
        print(f"report: {os.path.join(args.out, DIFF_JSON)} and "
              f"{os.path.join(args.out, DIFF_HTML)} ({time.monotonic() - start:.1f}s)")
    return 0


def _register_diff(features_sub) -> None:
    diff = features_sub.add_parser(
        "diff", help="what changed between two feature-source snapshots, table by table")
    diff.add_argument("--from", dest="source_from", required=True, metavar="SRC",
                      help="the snapshot serving now: a SQLite file or redis://HOST:PORT"
                           "[?prefix=NAME]")
    diff.add_argument("--to", required=True, metavar="SRC", help="the candidate snapshot")
    diff.add_argument("--tables", default=None, metavar="T1,T2",
                      help="only these tables (default: every table)")
    diff.add_argument("--out", default=None, metavar="DIR",
                      help="write diff.json and diff.html here")
    diff.set_defaults(func=cmd_features_diff)


def register(sub) -> None:
    features_sub = add_group(sub, "features", "load, diff and check the feature sources")
    load = features_sub.add_parser("load", help="copy the SQLite feature tables into Redis")
    load.add_argument("--sqlite", default="data/listening/features.sqlite",
                      help="the generator's feature file (default data/listening/features.sqlite)")
    load.add_argument("--to", required=True, metavar="redis://HOST:PORT")
    load.add_argument("--prefix", default="tandem", help="key prefix (default tandem)")
    load.set_defaults(func=cmd_features_load)
    _register_diff(features_sub)
