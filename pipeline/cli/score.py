"""`tandem score`: the ML Test Score of a run, from the evidence the run left behind."""

from __future__ import annotations

import argparse
import os

from tandem.pipeline.cli.errors import CommandError
from tandem.pipeline.cli.flags import add_config, add_set


def cmd_score(args: argparse.Namespace) -> int:
    import json as jsonlib

    from tandem.pipeline.config import load_config
    from tandem.pipeline.loop import read_loop_record
    from tandem.pipeline.score import format_score, score

    overrides = list(args.set)
    name = args.config
    if args.run:
        if not os.path.isdir(args.run):
            raise CommandError(f"--run {args.run} is not a directory")
        record = read_loop_record(args.run)
        if record is not None and name in (None, record["config"]):
            name = record["config"]
            overrides = list(record["overrides"]) + overrides
        if os.path.exists(os.path.join(args.run, "pipeline", "metadata.sqlite")):
            overrides.insert(0, f"output_dir={os.path.join(args.run, 'pipeline')}")
    if name is None:
        raise CommandError("--config is required (or --run with a loop's work directory)")
    config = load_config(name, overrides)
    if not os.path.exists(config.metadata_path):
        raise CommandError(f"no run to score: {config.metadata_path} does not exist (run "
                           "`make run`, or pass --run DIR)")
    result = score(config, args.run)
    if args.json:
        print(jsonlib.dumps(result, indent=2, sort_keys=True))
    else:
        for line in format_score(result):
            print(line)
    return 0


def register(sub) -> None:
    sc = sub.add_parser("score", help="the ML Test Score of a run, from its own evidence")
    add_config(sc, required=False, help="pipeline config YAML (or a name); default: the one --run's loop ran")
    sc.add_argument("--run", default=None, metavar="DIR",
                    help="a loop's work directory (make run: outputs/loop): its replay, "
                         "monitoring and promotion history")
    sc.add_argument("--json", action="store_true", help="print JSON")
    add_set(sc, help="override a config key, e.g. score.reviews=reviews.yaml")
    sc.set_defaults(func=cmd_score)
