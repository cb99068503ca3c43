"""`tandem shadow`: a candidate compared with the serving model on the logged requests, and
gated on how the two differ."""

from __future__ import annotations

import argparse
import os
import time

from tandem.pipeline.cli.errors import CommandError
from tandem.pipeline.cli.flags import add_beam_args, add_group, add_replay_config, add_set
from tandem.schemas import exit_status


def replay_config_dict(path: str | None, overrides: list[str]) -> dict:
    """The replay config as a dict (validated), for a component's exec property."""
    import dataclasses as dc

    from tandem.components.shadow.replay import load_replay_config

    config = load_replay_config(path, overrides)
    return dc.asdict(config)


def cmd_shadow_replay(args: argparse.Namespace) -> int:
    from tandem.components.shadow.replay import load_replay_config, summary
    from tandem.pipeline.beam import check_job_service, with_runner_defaults
    from tandem.pipeline.traffic_checks import run_replay

    config = load_replay_config(args.replay_config, args.set)
    _gateway_config_needs_features(args)
    beam_args = with_runner_defaults(args.beam_args)
    check_job_service(beam_args)
    start = time.monotonic()
    if args.candidate_features:
        report = _replay_candidate_features(args, config, beam_args)
    else:
        print(f"replay: {args.logs} through {args.baseline} (A) and {args.candidate} (B) ...",
              flush=True)
        report = run_replay(args.logs, args.baseline, args.candidate, args.out, config,
                            beam_args or None, labels=args.labels)
    for line in summary(report):
        print(line)
    if args.candidate_features:
        from tandem.components.shadow.features_replay import summary as features_summary

        for line in features_summary(report):
            print(line)
    print(f"report: {os.path.join(args.out, 'report.json')} and "
          f"{os.path.join(args.out, 'report.html')} ({time.monotonic() - start:.1f}s)")
    if not report["verdict"]["passed"]:
        print("FAILED: the candidate differs from the baseline beyond the gate")
        return exit_status.CHECK_FAILED
    print("PASSED: the candidate may be promoted")
    return 0


def _gateway_config_needs_features(args: argparse.Namespace) -> None:
    """--gateway-config says how to re-decorate; without --candidate-features nothing is."""
    if getattr(args, "gateway_config", None) and not args.candidate_features:
        raise CommandError("--gateway-config is for a replay with --candidate-features (its "
                           "joins re-decorate the logged requests); give both, or neither")


def source_check(args: argparse.Namespace, check: bool = True):
    """--candidate-features with --gateway-config as the promotion pipeline's SourceCheck
    (None without them); the snapshot is checked against the config's joins here, so bad
    input is one line before any pipeline starts (unless `check` is off: a compile names paths
    only the cluster can read)."""
    _gateway_config_needs_features(args)
    if not args.candidate_features:
        return None
    if not args.gateway_config:
        raise CommandError("--candidate-features needs --gateway-config: its joins say which "
                           "columns the candidate snapshot supplies")
    from tandem.pipeline.promotion import SourceCheck

    if check:
        from tandem.pipeline.feature_checks import redecoration_spec

        redecoration_spec(args.gateway_config, args.candidate_features)
    return SourceCheck(args.candidate_features, os.path.abspath(args.gateway_config)
                       if "://" not in args.gateway_config else args.gateway_config)


def add_candidate_features(parser: argparse.ArgumentParser) -> None:
    """--candidate-features and --gateway-config: judge a feature-source snapshot."""
    parser.add_argument("--candidate-features", default=None, metavar="SRC",
                        help="re-decorate each logged request from this feature-source snapshot "
                             "(SQLite file or redis://HOST:PORT[?prefix=NAME]) before B answers")
    parser.add_argument("--gateway-config", default=None, metavar="FILE",
                        help="the gateway config whose joins and source served the log (with "
                             "--candidate-features)")


def _replay_candidate_features(args: argparse.Namespace, config, beam_args: list[str]) -> dict:
    """The replay with B on the logged requests re-decorated from --candidate-features."""
    from tandem.pipeline.feature_checks import run_features_replay

    if not args.gateway_config:
        raise CommandError("--candidate-features needs --gateway-config: its joins say which "
                           "columns the candidate snapshot supplies")
    print(f"replay: {args.logs} through {args.baseline} (A, as logged) and {args.candidate} "
          f"(B) on the requests re-decorated from {args.candidate_features} ...", flush=True)
    report = run_features_replay(args.logs, args.baseline, args.candidate, args.out,
                                 args.gateway_config, args.candidate_features, config,
                                 beam_args=beam_args or None, labels=args.labels)
    return report


def cmd_shadow_validate(args: argparse.Namespace) -> int:
    from tandem.components.shadow.replay import load_report, preflight, summary
    from tandem.pipeline.beam import check_job_service, with_runner_defaults
    from tandem.pipeline.promotion import run_promotion_pipeline

    config = replay_config_dict(args.replay_config, args.set)
    preflight(args.logs, args.baseline, args.candidate)
    source = source_check(args)
    if not os.path.isdir(args.logs):
        raise CommandError(f"--logs must be a directory of request-log files (an Examples "
                           f"artifact's uri), got {args.logs}")
    beam_args = with_runner_defaults(args.beam_args)
    check_job_service(beam_args)
    start = time.monotonic()
    validator = "ShadowValidator" if source is None else \
        f"SourceValidator (re-decorated from {args.candidate_features})"
    print(f"promotion pipeline: {validator} on {args.logs} ...", flush=True)
    result = run_promotion_pipeline(args.baseline, args.candidate, args.logs, args.out, config,
                                    beam_args=beam_args or None, source=source)
    report = load_report(os.path.dirname(result["report"]))
    for line in summary(report):
        print(line)
    if source is not None:
        from tandem.components.shadow.features_replay import summary as features_summary

        for line in features_summary(report):
            print(line)
    blamed = f"; blamed: {result['blamed']}" if result.get("blamed") else ""
    print(f"blessing: {result['uri']} (blessed={result['blessed']}{blamed}; "
          f"{time.monotonic() - start:.1f}s)")
    return 0 if result["blessed"] else exit_status.CHECK_FAILED


def _add_models_and_log(parser: argparse.ArgumentParser, logs: str, out: str) -> None:
    """What both ways of comparing read: the log, the two models, the replay config."""
    parser.add_argument("--logs", required=True, help=logs)
    parser.add_argument("--baseline", required=True, help="model A: the version that served")
    parser.add_argument("--candidate", required=True, help="model B")
    parser.add_argument("--out", required=True, metavar="DIR", help=out)
    add_replay_config(parser)


def register(sub) -> None:
    shadow_sub = add_group(sub, "shadow", "compare a candidate with the serving model")
    replay = shadow_sub.add_parser(
        "replay", help="replay logged requests through models A and B and gate on how they differ")
    _add_models_and_log(replay, logs="request-log directory, file or glob",
                        out="where the report goes (report.json, report.html)")
    add_set(replay, help="override a replay config key, e.g. thresholds.max_flip_rate=0.02")
    replay.add_argument("--labels", default=None, metavar="FILE",
                        help="late labels (request_id,label[,timestamp] CSV or TFRecord): adds "
                             "A's and B's quality on the replayed traffic")
    add_candidate_features(replay)
    add_beam_args(replay)
    replay.set_defaults(func=cmd_shadow_replay, runs_beam=True)
    validate = shadow_sub.add_parser(
        "validate", help="run the promotion pipeline (TFX ShadowValidator, ML Metadata) locally")
    _add_models_and_log(validate, logs="request-log directory",
                        out="pipeline root and ML Metadata (metadata.sqlite) go here")
    add_set(validate, help="override a replay config key")
    add_candidate_features(validate)
    add_beam_args(validate)
    validate.set_defaults(func=cmd_shadow_validate, runs_beam=True)
