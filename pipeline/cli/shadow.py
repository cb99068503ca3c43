"""`tandem shadow`: a candidate compared with the serving model on the logged requests, and
gated on how the two differ."""

from __future__ import annotations

import argparse
import os
import time

from tandem.pipeline.cli.errors import CommandError
from tandem.pipeline.cli.flags import add_beam_args, add_replay_config, add_set
from tandem.schemas import exit_status


def replay_config_dict(path: str | None, overrides: list[str]) -> dict:
    """The replay config as a dict (validated), for a component's exec property."""
    import dataclasses as dc

    from tandem.components.shadow.replay import load_replay_config

    config = load_replay_config(path, overrides)
    return dc.asdict(config)


def cmd_shadow_replay(args: argparse.Namespace) -> int:
    from tandem.components.shadow.replay import load_replay_config, summary
    from tandem.pipeline.traffic_checks import run_replay

    config = load_replay_config(args.replay_config, args.set)
    start = time.monotonic()
    print(f"replay: {args.logs} through {args.baseline} (A) and {args.candidate} (B) ...",
          flush=True)
    report = run_replay(args.logs, args.baseline, args.candidate, args.out, config,
                        args.beam_args or None, labels=args.labels)
    for line in summary(report):
        print(line)
    print(f"report: {os.path.join(args.out, 'report.json')} and "
          f"{os.path.join(args.out, 'report.html')} ({time.monotonic() - start:.1f}s)")
    if not report["verdict"]["passed"]:
        print("FAILED: the candidate differs from the baseline beyond the gate")
        return exit_status.CHECK_FAILED
    print("PASSED: the candidate may be promoted")
    return 0


def cmd_shadow_validate(args: argparse.Namespace) -> int:
    from tandem.components.shadow.replay import load_report, preflight, summary
    from tandem.pipeline.promotion import run_promotion_pipeline

    config = replay_config_dict(args.replay_config, args.set)
    preflight(args.logs, args.baseline, args.candidate)
    if not os.path.isdir(args.logs):
        raise CommandError(f"--logs must be a directory of request-log files (an Examples "
                           f"artifact's uri), got {args.logs}")
    start = time.monotonic()
    print(f"promotion pipeline: ShadowValidator on {args.logs} ...", flush=True)
    result = run_promotion_pipeline(args.baseline, args.candidate, args.logs, args.out, config)
    report = load_report(os.path.dirname(result["report"]))
    for line in summary(report):
        print(line)
    print(f"blessing: {result['uri']} (blessed={result['blessed']}; "
          f"{time.monotonic() - start:.1f}s)")
    return 0 if result["blessed"] else exit_status.CHECK_FAILED


def register(sub) -> None:
    shadow = sub.add_parser("shadow", help="compare a candidate with the serving model")
    shadow_sub = shadow.add_subparsers(dest="shadow_command", required=True, metavar="ACTION")
    replay = shadow_sub.add_parser(
        "replay", help="replay logged requests through models A and B and gate on how they differ")
    replay.add_argument("--logs", required=True, help="request-log directory, file or glob")
    replay.add_argument("--baseline", required=True, help="model A: the version that served")
    replay.add_argument("--candidate", required=True, help="model B")
    replay.add_argument("--out", required=True, metavar="DIR",
                        help="where the report goes (report.json, report.html)")
    add_replay_config(replay)
    add_set(replay, help="override a replay config key, e.g. thresholds.max_flip_rate=0.02")
    replay.add_argument("--labels", default=None, metavar="FILE",
                        help="late labels (request_id,label[,timestamp] CSV or TFRecord): adds "
                             "A's and B's quality on the replayed traffic")
    add_beam_args(replay)
    replay.set_defaults(func=cmd_shadow_replay, runs_beam=True)
    validate = shadow_sub.add_parser(
        "validate", help="run the promotion pipeline (TFX ShadowValidator, ML Metadata) locally")
    validate.add_argument("--logs", required=True, help="request-log directory")
    validate.add_argument("--baseline", required=True, help="model A: the version that served")
    validate.add_argument("--candidate", required=True, help="model B")
    validate.add_argument("--out", required=True, metavar="DIR",
                          help="pipeline root and ML Metadata (metadata.sqlite) go here")
    add_replay_config(validate)
    add_set(validate, help="override a replay config key")
    validate.set_defaults(func=cmd_shadow_validate, runs_beam=True)
