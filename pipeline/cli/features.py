"""`tandem features`: the feature sources the gateway decorates requests from."""

from __future__ import annotations

import argparse

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


def register(sub) -> None:
    features_sub = add_group(sub, "features", "load the feature sources into Redis")
    load = features_sub.add_parser("load", help="copy the SQLite feature tables into Redis")
    load.add_argument("--sqlite", default="data/listening/features.sqlite",
                      help="the generator's feature file (default data/listening/features.sqlite)")
    load.add_argument("--to", required=True, metavar="redis://HOST:PORT")
    load.add_argument("--prefix", default="tandem", help="key prefix (default tandem)")
    load.set_defaults(func=cmd_features_load)
