"""`tandem features`: the feature sources the gateway decorates requests from, and the
snapshot its running gateways switch to (promote, rollback)."""

from __future__ import annotations

import argparse
import os

from tandem.pipeline.cli.errors import CommandError
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
    tables = [t for t in args.tables.split(",") if t] if args.tables is not None else None
    if tables == []:
        raise CommandError(f"--tables {args.tables!r} names no table")
    if args.out and os.path.exists(args.out) and not os.path.isdir(args.out):
        raise CommandError(f"--out {args.out} is a file, not a directory")
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
    features_sub = add_group(sub, "features", "load, diff, promote or roll back snapshots")
    load = features_sub.add_parser("load", help="copy the SQLite feature tables into Redis")
    load.add_argument("--sqlite", default="data/listening/features.sqlite",
                      help="the generator's feature file (default data/listening/features.sqlite)")
    load.add_argument("--to", required=True, metavar="redis://HOST:PORT")
    load.add_argument("--prefix", default="tandem", help="key prefix (default tandem)")
    load.set_defaults(func=cmd_features_load)
    _register_diff(features_sub)
    register_promotion(features_sub)


# ---- promote and rollback: the snapshot a running gateway decorates from -----------------


def _gateway_joins(path: str):
    from tandem.pipeline.cli.errors import CommandError
    from tandem.serving.gateway.config import load_config

    config = load_config(path)
    if not config.join_list():
        raise CommandError(f"{path} decorates nothing (no decorate.joins): no feature source "
                           "to promote")
    return config


def _checked(spec: str, joins, against: str | None):
    """Open `spec` and check it can replace the snapshot `against`; (its version, its kind)."""
    from tandem.serving.gateway.sources import check_snapshot, open_spec

    current = None
    if against:
        try:
            current = open_spec(against)
        except Exception:  # noqa: BLE001 - the current snapshot gone: check what can be
            current = None
    source = open_spec(spec)
    try:
        check_snapshot(source, joins, current)
        return source.version, source.kind
    finally:
        source.close()
        if current is not None:
            current.close()


def promote_snapshot(gateway: str, to: str) -> tuple[str, str]:
    """Check `to` against the gateway config's joins, record it as the current snapshot and
    signal the running gateways: (its version, the line that says so)."""
    from tandem.serving.gateway import snapshots

    config = _gateway_joins(gateway)
    own = config.decorate.redis or config.decorate.sqlite
    current = snapshots.current(gateway) or own
    version, kind = _checked(to, config.join_list(), current)
    own_version = _checked(own, config.join_list(), None)[0] if current == own else ""
    if not own_version:
        history = snapshots.read_history(gateway)["history"]
        own_version = history[0]["version"] if history else ""
    snapshots.record_promotion(gateway, to, version, own, own_version)
    pids = snapshots.signal_gateways(gateway)
    return version, (f"promoted {kind} {version} ({to}) for {gateway}; {len(pids)} running "
                     "gateway process(es) switch from their next request")


def cmd_features_promote(args: argparse.Namespace) -> int:
    print(promote_snapshot(args.gateway, args.to)[1])
    return 0


def cmd_features_rollback(args: argparse.Namespace) -> int:
    from tandem.pipeline.cli.errors import CommandError
    from tandem.serving.gateway import snapshots

    config = _gateway_joins(args.gateway)
    history = snapshots.read_history(args.gateway)
    if history["current"] < 1:
        raise CommandError(f"nothing to roll back to for {args.gateway} (no promotion "
                           f"in {snapshots.history_path(args.gateway)})")
    entries = history["history"]
    previous = entries[history["current"] - 1]["source"]
    _checked(previous, config.join_list(), entries[history["current"]]["source"])
    entry = snapshots.record_rollback(args.gateway)
    pids = snapshots.signal_gateways(args.gateway)
    print(f"rolled back to {entry['version']} ({entry['source']}) for {args.gateway}; "
          f"{len(pids)} running gateway process(es) switch from their next request")
    return 0


def register_promotion(features_sub) -> None:
    promote = features_sub.add_parser(
        "promote", help="switch the gateways of a config to a feature-source snapshot")
    promote.add_argument("--gateway", required=True, metavar="CONFIG",
                         help="the gateway config YAML the running gateways were started with")
    promote.add_argument("--to", required=True, metavar="SRC",
                         help="the snapshot: a SQLite file or redis://HOST:PORT[/DB]")
    promote.set_defaults(func=cmd_features_promote)
    rollback = features_sub.add_parser(
        "rollback", help="switch the gateways of a config back to the previous snapshot")
    rollback.add_argument("--gateway", required=True, metavar="CONFIG",
                          help="the gateway config YAML the running gateways were started with")
    rollback.set_defaults(func=cmd_features_rollback)
