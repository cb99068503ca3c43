"""`tandem loop`: the whole flow in one command, from generated data to a promotion and a
rollback (`make run`)."""

from __future__ import annotations

import argparse

from tandem.pipeline.cli.flags import add_config, add_set


def cmd_loop(args: argparse.Namespace) -> int:
    from tandem.pipeline.loop import run_loop

    return run_loop(args.out, rows=args.rows, verbose=getattr(args, "verbose", False),
                    config=args.config, overrides=args.set, scenario=args.scenario)


def register(sub) -> None:
    loop = sub.add_parser(
        "loop", help="the whole loop in one command (what `make run` runs)",
        description="The whole loop, on embedded defaults (what `make run` runs) or on a "
                    "config's own data: train, serve, traffic, monitor, retrain from logs, "
                    "canary, replay, promote, rollback.")
    add_config(loop, required=False, help="a pipeline config (YAML or a name): a held-out share of its rows "
                           "becomes the traffic (default: the listening generator)")
    add_set(loop, help="override a key of --config, e.g. loop.drift.feature=age")
    loop.add_argument("--scenario", choices=("default", "bad-canary", "feature-source"),
                      default="default",
                      help="bad-canary: v2 is trained on shuffled labels and must be rejected; "
                           "feature-source: a users snapshot with a unit bug must be rejected "
                           "and a benign one switched in under traffic (listening only)")
    loop.add_argument("--out", default="outputs/loop", metavar="DIR",
                      help="work directory, started afresh (default outputs/loop)")
    loop.add_argument("--rows", type=int, default=None,
                      help="rows: of generated training data for v1 (default 12000), or at "
                           "most this many of --config's rows (default all)")
    loop.set_defaults(func=cmd_loop, runs_beam=True)
