"""`tandem monitor`: drift and skew in the logged traffic, per window, as a Beam job or as the
TFX monitoring pipeline."""

from __future__ import annotations

import argparse
import os
import time

from tandem.pipeline.cli.errors import CommandError
from tandem.pipeline.cli.flags import add_beam_args, add_config, add_group, add_set
from tandem.schemas import exit_status


def cmd_monitor_run(args: argparse.Namespace) -> int:
    from tandem.components.monitor.job import parse_duration
    from tandem.pipeline.beam import check_job_service, job_args, with_runner_defaults
    from tandem.pipeline.config import load_config
    from tandem.pipeline.traffic_checks import run_monitor

    config = load_config(args.config, args.set)
    window_s = parse_duration(args.window) if args.window else None
    # Args after `--` replace the config's beam.extra_args; without them, the config's run.
    beam_args = with_runner_defaults(args.beam_args) if args.beam_args else job_args(config)
    check_job_service(beam_args)
    summary = run_monitor(args.logs, config, args.out, window_s=window_s,
                          window_records=args.window_records,
                          training_statistics=args.training_statistics,
                          labels=args.labels, beam_args=beam_args,
                          training_examples=args.training_examples,
                          progress=lambda line: print(line, flush=True))
    if not summary["training_statistics"]:
        print("no training statistics found for the served model (ML Metadata at "
              f"{config.metadata_path}): skew not checked; pass --training-statistics")
    print(f"report: {summary['report']} ({summary['seconds']:.1f}s)")
    if summary["drift_features"] or summary["skew_features"]:
        print(f"FOUND: drift in {', '.join(summary['drift_features']) or 'no feature'}; "
              f"skew in {', '.join(summary['skew_features']) or 'no feature'}")
        return exit_status.CHECK_FAILED
    print("no drift or skew")
    return 0


def cmd_monitor_pipeline(args: argparse.Namespace) -> int:
    """The same check as `monitor run`, as the TFX monitoring pipeline (ML Metadata)."""

    from tandem.components.metadata import open_store
    from tandem.components.monitor.job import find_training_statistics, served_model
    from tandem.pipeline.beam import check_job_service, job_args, run_local_dag
    from tandem.pipeline.config import load_config
    from tandem.pipeline.monitoring import create_monitoring_pipeline
    from tandem.schemas.request_log import expand

    config = load_config(args.config, args.set)
    if not os.path.isdir(args.logs):
        raise CommandError(f"monitor pipeline needs --logs to be a directory (an Examples "
                           f"artifact's uri), got {args.logs}")
    files = expand(args.logs)
    overrides = list(args.set)
    if args.window_records:
        overrides.append(f"monitor.window_records={args.window_records}")
    if args.window:
        from tandem.components.monitor.job import parse_duration

        overrides.append(f"monitor.window_s={parse_duration(args.window)}")
    training = args.training_statistics
    if training and os.path.isfile(training) and \
            os.path.basename(os.path.dirname(training)).startswith("Split-"):
        training = os.path.dirname(os.path.dirname(training))  # the artifact's directory
    if not training:
        _, version = served_model(files)
        found = find_training_statistics(config.metadata_path, config.model_name, version) \
            if version else None
        training = os.path.dirname(os.path.dirname(found)) if found else None
    check_job_service(job_args(config))
    root = os.path.abspath(args.out)
    metadata = os.path.join(root, "metadata.sqlite")
    pipeline = create_monitoring_pipeline(
        load_config(config.source, overrides), os.path.abspath(args.logs), config.schema,
        os.path.join(root, "pipeline"), training, beam_args=job_args(config),
        metadata_path=metadata)
    start = time.monotonic()
    print(f"monitoring pipeline: TrafficMonitor on {args.logs} ...", flush=True)
    run_local_dag(pipeline)
    store = open_store(metadata)
    [latest] = sorted(store.get_artifacts_by_type("ExampleAnomalies"), key=lambda a: a.id)[-1:]
    props = latest.custom_properties
    drift = props["drift_features"].string_value
    skew = props["skew_features"].string_value
    print(f"anomalies: {latest.uri}; report: {props['report'].string_value} "
          f"({time.monotonic() - start:.1f}s)")
    if props["drift_or_skew_found"].int_value:
        print(f"FOUND: drift in {drift or 'no feature'}; skew in {skew or 'no feature'}")
        return exit_status.CHECK_FAILED
    print("no drift or skew")
    return 0


def _add_window_flags(parser: argparse.ArgumentParser) -> None:
    """What both ways of monitoring read: the log, the config, the windows, the baseline."""
    add_config(parser, help="pipeline config (name or path): schema, label, monitor: thresholds")
    parser.add_argument("--out", required=True, metavar="DIR",
                        help="where statistics, anomalies and reports go")
    window = parser.add_mutually_exclusive_group()
    window.add_argument("--window", default=None, metavar="DURATION",
                        help="window by arrival time, e.g. 15m, 1h")
    window.add_argument("--window-records", type=int, default=None, metavar="N",
                        help="window by N logged requests (default: monitor.window_records)")
    parser.add_argument("--training-statistics", default=None, metavar="PATH",
                        help="the served model's training statistics (default: found in ML "
                             "Metadata through the model version that answered)")
    add_set(parser, help="override a config key, e.g. monitor.drift.psi=0.1")


def register(sub) -> None:
    mon_sub = add_group(sub, "monitor", "drift and skew in logged traffic, per window")
    run = mon_sub.add_parser("run", help="the monitoring Beam job over the request log")
    run.add_argument("--logs", required=True, help="request-log directory, file or glob")
    _add_window_flags(run)
    run.add_argument("--training-examples", default=None, metavar="GLOB",
                     help="training tf.Examples (TFRecord): feature-value skew, joined by id")
    run.add_argument("--labels", default=None, metavar="FILE",
                     help="late labels (request_id,label[,timestamp]): label drift too")
    add_beam_args(run, "they replace the config's beam.extra_args")
    run.set_defaults(func=cmd_monitor_run, runs_beam=True)

    pipeline = mon_sub.add_parser(
        "pipeline", help="the same check as the TFX monitoring pipeline (TrafficMonitor; ML "
                         "Metadata in --out/metadata.sqlite)")
    pipeline.add_argument("--logs", required=True,
                          help="request-log directory (an Examples artifact's uri)")
    _add_window_flags(pipeline)
    pipeline.set_defaults(func=cmd_monitor_pipeline, runs_beam=True)
