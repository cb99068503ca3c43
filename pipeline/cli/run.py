"""`tandem run` and `tandem retrain`: the training pipeline, on a config's data or on a span
joined from the request log and late labels."""

from __future__ import annotations

import argparse

from tandem.pipeline.cli.flags import add_config, add_set


def cmd_run(args: argparse.Namespace) -> int:
    from tandem.pipeline.config import load_config
    from tandem.pipeline.runner import run

    config = load_config(args.config, args.set)
    result = run(config, until=args.until, verbose=getattr(args, "verbose", False))
    return result.exit_code


def cmd_retrain(args: argparse.Namespace) -> int:
    """The training pipeline on a span joined from the request log and late labels."""
    from tandem.pipeline.config import load_config
    from tandem.pipeline.runner import run

    overrides = ["data.format=request_log", f"data.location={args.logs}",
                 f"data.labels={args.labels}", *args.set]
    config = load_config(args.config, overrides)
    result = run(config, until=args.until, verbose=getattr(args, "verbose", False))
    return result.exit_code


def register(sub) -> None:
    from tandem.pipeline.config import STAGES

    run = sub.add_parser("run", help="run the training pipeline locally")
    add_config(run)
    run.add_argument("--until", choices=STAGES, default=STAGES[-1],
                     help=f"last stage to run (default {STAGES[-1]})")
    add_set(run, help="override a config key, e.g. output_dir=/tmp/out")
    run.set_defaults(func=cmd_run, runs_beam=True)

    # No second decoration join: the log holds the examples as the gateway decorated them.
    retrain = sub.add_parser("retrain", help="the pipeline on the request log joined with labels")
    add_config(retrain)
    retrain.add_argument("--logs", required=True, help="request-log directory or glob")
    retrain.add_argument("--labels", required=True,
                         help="late labels: request_id,label[,timestamp] (CSV or TFRecord)")
    retrain.add_argument("--until", choices=STAGES, default=STAGES[-1],
                         help="last stage to run (default: push)")
    add_set(retrain)
    retrain.set_defaults(func=cmd_retrain, runs_beam=True)
