"""The `tandem` command line: data, schema and pipeline subcommands."""

from __future__ import annotations

import argparse
import os
import sys
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")  # before TensorFlow is imported

from tandem.schemas import exit_status  # noqa: E402
from tandem.serving.cli import CommandError, add_serving_commands  # noqa: E402


def _progress_printer(label: str):
    last = [0.0]

    def report(done: int, total: int) -> None:
        now = time.monotonic()
        if done == total or now - last[0] >= 2.0:
            last[0] = now
            print(f"{label}: {done:,}/{total:,} rows ({100 * done / total:.0f}%)", flush=True)

    return report


def cmd_data_generate(args: argparse.Namespace) -> int:
    from tandem.pipeline.datasets import listening

    drift = listening.parse_drift(args.drift)
    formats = ("tfrecord", "csv") if args.format == "both" else (args.format,)
    start = time.monotonic()
    manifest = listening.generate(
        args.out, args.rows, seed=args.seed, drift=drift, span=args.span, formats=formats,
        progress=_progress_printer("generate"), requests=args.requests, labels=args.labels,
        label_delay_s=args.label_delay, label_loss=args.label_loss, rate=args.rate,
    )
    if "labels" in manifest:
        lab = manifest["labels"]
        print(f"wrote {lab['written']:,} labels to "
              f"{os.path.join(args.out, f'span-{args.span}', lab['file'])} (mean delay "
              f"{lab['delay_s']:g}s, {lab['loss']:.0%} lost)")
    what = "requests (undecorated, no label)" if manifest.get("requests_only") else "rows"
    print(
        f"wrote {manifest['rows']:,} {what} (skip rate {manifest['skip_rate']:.1%}"
        f"{', drift: ' + ', '.join(manifest['drift']) if manifest['drift'] else ''}) to "
        f"{os.path.join(args.out, f'span-{args.span}')} and feature sources to "
        f"{manifest['feature_sources']} in {time.monotonic() - start:.1f}s"
    )
    return 0


def cmd_data_profiles(args: argparse.Namespace) -> int:
    from tandem.pipeline.datasets import listening

    for name, text in sorted(listening.DRIFT_PROFILES.items()):
        print(f"{name:<18} {text}")
    return 0


def cmd_schema_propose(args: argparse.Namespace) -> int:
    from tandem.components.statistics import compute_statistics
    from tandem.pipeline.beam import beam_pipeline_args
    from tandem.pipeline.config import load_config
    from tandem.pipeline.preflight import check_data
    from tandem.schemas import SchemaError, load_schema, write_schema
    from tandem.schemas.propose import diff_schemas, propose_schema

    config = load_config(args.config, args.set)
    summary = check_data(config)  # a mistyped label is named now, not after the statistics
    # Read the curated schema before writing: --out may be the curated file itself.
    try:
        curated = load_schema(config.schema)
    except SchemaError:
        curated = None
    where = f"span {summary.span} " if summary.span is not None else ""
    print(f"computing statistics over {where}{summary.glob} ...", flush=True)
    stats = compute_statistics(summary.glob, config.data.format,
                               beam_pipeline_args(config, summary.files))
    try:
        schema = propose_schema(stats, config.label, config.problem_type, config.data.format,
                                curated)
    except ValueError as e:
        raise CommandError(str(e)) from None
    write_schema(schema, args.out)
    print(f"proposed schema written to {args.out}")
    replaced = os.path.abspath(args.out) == os.path.abspath(config.schema)
    if curated is None:
        if not replaced:
            print(f"no curated schema at {config.schema} yet; review {args.out} and copy it there")
        return 0
    previous = "the previous curated schema" if replaced else "the curated schema"
    diff = diff_schemas(curated, schema)
    if not diff:
        print(f"no difference from {previous} {config.schema}")
        return 0
    print(f"\nchanges against {previous} {config.schema} (- curated, + proposed):")
    print("\n".join(diff))
    return 0


def cmd_run(args: argparse.Namespace) -> int:
    from tandem.pipeline.config import load_config
    from tandem.pipeline.runner import run

    config = load_config(args.config, args.set)
    result = run(config, until=args.until, verbose=getattr(args, "verbose", False))
    return result.exit_code


def cmd_loop(args: argparse.Namespace) -> int:
    from tandem.pipeline.loop import LoopError, run_loop
    from tandem.pipeline.loop_data import LoopDataError

    try:
        return run_loop(args.work, rows=args.rows, verbose=getattr(args, "verbose", False),
                        config=args.config, overrides=args.set, scenario=args.scenario)
    except (LoopError, LoopDataError) as e:
        raise CommandError(str(e)) from None


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


def cmd_explain(args: argparse.Namespace) -> int:
    import json as jsonlib

    from tandem.components.explain import explain, format_explain, read_example

    path = args.model
    if os.path.isdir(os.path.join(path, "Format-Serving")):
        path = os.path.join(path, "Format-Serving")  # a Trainer model artifact
    elif os.path.isdir(path) and not os.path.isfile(os.path.join(path, "saved_model.pb")):
        versions = sorted((int(v) for v in os.listdir(path) if v.isdigit()), reverse=True)
        if versions:  # a serving base directory: its newest version, as TF Serving serves
            path = os.path.join(path, str(versions[0]))
    trace = explain(path, read_example(args.example, args.index))
    if args.json:
        print(jsonlib.dumps(trace, indent=2))
    else:
        print("\n".join(format_explain(trace)))
    return 0


def cmd_retrain(args: argparse.Namespace) -> int:
    """The training pipeline on a span joined from the request log and late labels."""
    from tandem.pipeline.config import load_config
    from tandem.pipeline.runner import run

    overrides = ["data.format=request_log", f"data.location={args.logs}",
                 f"data.labels={args.labels}", *args.set]
    config = load_config(args.config, overrides)
    result = run(config, until=args.until, verbose=getattr(args, "verbose", False))
    return result.exit_code


def _replay_config_dict(path: str | None, overrides: list[str]) -> dict:
    """The replay config as a dict (validated), for a component's exec property."""
    import dataclasses as dc

    from tandem.components.shadow.replay import load_replay_config

    config = load_replay_config(path, overrides)
    return dc.asdict(config)


def cmd_compile(args: argparse.Namespace) -> int:
    from tandem.pipeline.config import load_config
    from tandem.pipeline.kubeflow import compile_kubeflow

    if args.monitoring:
        from tandem.pipeline.monitoring import compile_monitoring_kubeflow

        missing = [f"--{n}" for n in ("config", "logs", "pipeline_root") if not getattr(args, n)]
        if missing:
            raise CommandError("--monitoring needs " + ", ".join(m.replace("_", "-")
                                                                 for m in missing))
        config = load_config(args.config, args.set)
        summary = compile_monitoring_kubeflow(
            args.kubeflow, config, args.logs, args.schema_uri or config.schema,
            args.pipeline_root, args.image, args.training_statistics)
    elif args.promotion:
        from tandem.pipeline.promotion import compile_promotion_kubeflow

        missing = [f"--{n}" for n in ("baseline", "candidate", "logs", "pipeline_root")
                   if not getattr(args, n)]
        if missing:
            raise CommandError("--promotion needs " + ", ".join(m.replace("_", "-")
                                                                for m in missing))
        summary = compile_promotion_kubeflow(
            args.kubeflow, args.baseline, args.candidate, args.logs, args.pipeline_root,
            args.image, _replay_config_dict(args.replay_config, []))
    else:
        if not args.config:
            raise CommandError("compile needs --config (the training pipeline) or --promotion")
        config = load_config(args.config, args.set)
        summary = compile_kubeflow(
            config, args.kubeflow, image=args.image, pipeline_root=args.pipeline_root,
            schema_uri=args.schema_uri,
        )
    print(f"wrote Kubeflow pipeline spec {summary['path']} (image {summary['image']})")
    print("components: " + ", ".join(summary["components"]))
    print("module code the image must contain (installed with tandem):")
    for component, module in summary["modules"].items():
        print(f"  {component:<18} {module}")
    return 0


def cmd_model_inspect(args: argparse.Namespace) -> int:
    from tandem.components.build_record import format_record, load_record

    record = load_record(args.path)
    print(format_record(record))
    return 0


def cmd_model_diff(args: argparse.Namespace) -> int:
    from tandem.components.build_record import diff_records, load_record

    a, b = load_record(args.a), load_record(args.b)
    lines = diff_records(a, b)
    if not lines:
        print("no differences in what the two models were built from")
    for line in lines:
        print(line)
    return 0


def cmd_shadow_replay(args: argparse.Namespace) -> int:
    from tandem.components.shadow.replay import load_replay_config, summary
    from tandem.pipeline.traffic_checks import run_replay

    config = load_replay_config(args.config, args.set)
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

    config = _replay_config_dict(args.config, args.set)
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


def cmd_monitor(args: argparse.Namespace) -> int:
    from tandem.components.monitor.job import parse_duration
    from tandem.pipeline.config import load_config
    from tandem.pipeline.traffic_checks import run_monitor

    config = load_config(args.config, args.set)
    if args.pipeline:
        return _monitor_pipeline(args, config)
    window_s = parse_duration(args.window) if args.window else None
    summary = run_monitor(args.logs, config, args.out, window_s=window_s,
                          window_records=args.window_records,
                          training_statistics=args.training_statistics,
                          labels=args.labels, beam_args=args.beam_args or None,
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


def _monitor_pipeline(args: argparse.Namespace, config) -> int:
    """`tandem monitor --pipeline`: the same check as the TFX monitoring pipeline."""
    from tfx import v1 as tfx

    from tandem.components.metadata import open_store
    from tandem.components.monitor.job import find_training_statistics, served_model
    from tandem.pipeline.config import load_config
    from tandem.pipeline.monitoring import create_monitoring_pipeline
    from tandem.schemas.request_log import expand

    if not os.path.isdir(args.logs):
        raise CommandError(f"--pipeline needs --logs to be a directory (an Examples artifact's "
                           f"uri), got {args.logs}")
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
    root = os.path.abspath(args.out)
    metadata = os.path.join(root, "metadata.sqlite")
    pipeline = create_monitoring_pipeline(
        load_config(config.source, overrides), os.path.abspath(args.logs), config.schema,
        os.path.join(root, "pipeline"), training, metadata_path=metadata)
    start = time.monotonic()
    print(f"monitoring pipeline: TrafficMonitor on {args.logs} ...", flush=True)
    tfx.orchestration.LocalDagRunner().run(pipeline)
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


def cmd_report_stats(args: argparse.Namespace) -> int:
    from tandem.components.monitor.job import load_statistics
    from tandem.pipeline.statistics_report import statistics_page

    stats = load_statistics(args.path)
    compare = load_statistics(args.compare) if args.compare else None
    schema = anomalies = None
    if args.schema:
        import tensorflow_data_validation as tfdv

        try:
            schema = tfdv.load_schema_text(args.schema)
        except Exception as e:  # noqa: BLE001 - any parse failure is bad input
            raise CommandError(f"{args.schema} is not a schema in text format: "
                               f"{str(e).splitlines()[0][:200]}") from None
        anomalies = tfdv.validate_statistics(stats, schema)
    names = (os.path.basename(os.path.normpath(args.path)) or "data",
             os.path.basename(os.path.normpath(args.compare or "")) or "other")
    if names[0] == names[1]:
        names = ("data", "compare")
    page = statistics_page(stats, compare, schema, anomalies, names=names,
                           title="tandem statistics" + (" comparison" if compare else ""))
    page.write(args.out)
    print(f"wrote {args.out}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    from tandem.pipeline.config import STAGES

    parser = argparse.ArgumentParser(
        prog="tandem", description="tandem: a TFX-native production ML pipeline.",
        epilog="exit status: 0 done; 1 a check failed (anomalies, not blessed); 2 bad input or "
               "config; 3 an unexpected failure (--verbose shows the trace); 130 interrupted",
    )
    parser.add_argument("--verbose", action="store_true",
                        help="show library logs and, on failure, the full trace")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    data = sub.add_parser("data", help="datasets: generate synthetic listening sessions")
    data_sub = data.add_subparsers(dest="data_command", required=True, metavar="ACTION")
    gen = data_sub.add_parser("generate", help="write synthetic listening sessions")
    gen.add_argument("--rows", type=int, required=True, help="number of examples")
    gen.add_argument("--out", required=True, help="output directory (span-N/ is made inside)")
    gen.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    gen.add_argument("--span", type=int, default=1, help="span number to write (default 1)")
    gen.add_argument(
        "--drift", default=None,
        help="comma-separated drift profiles (see `tandem data profiles`)",
    )
    gen.add_argument(
        "--format", choices=("tfrecord", "csv", "both"), default="tfrecord",
        help="GZIP TFRecord tf.Examples (default), CSV, or both",
    )
    gen.add_argument("--requests", action="store_true",
                     help="write what a client sends: keys and request-time features only")
    gen.add_argument("--labels", choices=("csv", "tfrecord"), default=None,
                     help="also write the requests' late labels (request_id,label,timestamp)")
    gen.add_argument("--label-delay", type=float, default=3600.0, metavar="SECONDS",
                     help="mean delay before a label arrives (default 3600)")
    gen.add_argument("--label-loss", type=float, default=0.0, metavar="SHARE",
                     help="share of labels that never arrive (default 0)")
    gen.add_argument("--rate", type=float, default=100.0,
                     help="requests per second assumed for the labels' timestamps")
    gen.set_defaults(func=cmd_data_generate)
    profiles = data_sub.add_parser("profiles", help="list the drift profiles")
    profiles.set_defaults(func=cmd_data_profiles)

    schema = sub.add_parser("schema", help="schema contracts")
    schema_sub = schema.add_subparsers(dest="schema_command", required=True, metavar="ACTION")
    propose = schema_sub.add_parser(
        "propose", help="infer a schema from the data and diff it against the curated one"
    )
    propose.add_argument("--config", required=True, help="pipeline config YAML (or a name)")
    propose.add_argument("--out", required=True, help="where to write the proposed schema")
    propose.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                         help="override a config key, e.g. data.location=/tmp/d")
    propose.set_defaults(func=cmd_schema_propose)

    run = sub.add_parser("run", help="run the pipeline locally")
    run.add_argument("--config", required=True, help="pipeline config YAML (or a name)")
    run.add_argument("--until", choices=STAGES, default=STAGES[-1],
                     help=f"last stage to run (default {STAGES[-1]})")
    run.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                     help="override a config key, e.g. output_dir=/tmp/out")
    run.set_defaults(func=cmd_run)

    sc = sub.add_parser("score", help="the ML Test Score of a run, from its own evidence")
    sc.add_argument("--config", default=None,
                    help="pipeline config YAML (or a name); default: the one --run's loop ran")
    sc.add_argument("--run", default=None, metavar="DIR",
                    help="a loop's work directory (make run: outputs/loop): its replay, "
                         "monitoring and promotion history")
    sc.add_argument("--json", action="store_true", help="print JSON")
    sc.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                    help="override a config key, e.g. score.reviews=reviews.yaml")
    sc.set_defaults(func=cmd_score)

    ex = sub.add_parser("explain", help="one example through a model: raw -> transformed -> "
                                        "score, and what moves the score")
    ex.add_argument("--model", required=True, metavar="DIR",
                    help="a SavedModel (a pushed version), a serving base directory (its "
                         "newest version) or a Trainer model artifact")
    ex.add_argument("--example", required=True, metavar="FILE",
                    help="a TFRecord file of tf.Examples (GZIP or not), or a text tf.Example "
                         "(.pbtxt)")
    ex.add_argument("--index", type=int, default=0, help="which record of FILE (default 0)")
    ex.add_argument("--json", action="store_true", help="print JSON")
    ex.set_defaults(func=cmd_explain)

    loop = sub.add_parser(
        "loop", help="the whole loop, on embedded defaults (what `make run` runs) or on a "
                     "config's own data: train, serve, traffic, monitor, retrain from logs, "
                     "canary, replay, promote, rollback")
    loop.add_argument("--config", default=None,
                      help="a pipeline config (YAML or a name): a held-out share of its rows "
                           "becomes the traffic (default: the listening generator)")
    loop.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                      help="override a key of --config, e.g. loop.drift.feature=age")
    loop.add_argument("--scenario", choices=("default", "bad-canary"), default="default",
                      help="bad-canary: v2 is trained on shuffled labels and must be rejected")
    loop.add_argument("--work", default="outputs/loop",
                      help="work directory, started afresh (default outputs/loop)")
    loop.add_argument("--rows", type=int, default=None,
                      help="rows: of generated training data for v1 (default 12000), or at "
                           "most this many of --config's rows (default all)")
    loop.set_defaults(func=cmd_loop)

    retrain = sub.add_parser(
        "retrain", help="retrain from the request log joined with late labels (no second "
                        "decoration join); then the unchanged pipeline")
    retrain.add_argument("--config", required=True, help="pipeline config YAML (or a name)")
    retrain.add_argument("--logs", required=True, help="request-log directory or glob")
    retrain.add_argument("--labels", required=True,
                         help="late labels: request_id,label[,timestamp] (CSV or TFRecord)")
    retrain.add_argument("--until", choices=STAGES, default=STAGES[-1],
                         help="last stage to run (default: push)")
    retrain.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                         help="override a config key")
    retrain.set_defaults(func=cmd_retrain)

    comp = sub.add_parser("compile", help="compile the pipeline for Kubeflow Pipelines")
    comp.add_argument("--kubeflow", required=True, metavar="OUT.json", help="output spec path")
    comp.add_argument("--config", default=None, help="pipeline config YAML (or a name)")
    comp.add_argument("--promotion", action="store_true",
                      help="compile the promotion pipeline (request logs + baseline + candidate "
                           "-> ShadowValidator) instead of the training pipeline")
    comp.add_argument("--monitoring", action="store_true",
                      help="compile the monitoring pipeline (request logs -> TrafficMonitor) "
                           "for --config")
    comp.add_argument("--training-statistics", default=None,
                      help="with --monitoring: the training ExampleStatistics artifact's URI")
    comp.add_argument("--baseline", default=None, help="with --promotion: model A's URI")
    comp.add_argument("--candidate", default=None, help="with --promotion: model B's URI")
    comp.add_argument("--logs", default=None,
                      help="with --promotion or --monitoring: request-log directory URI")
    comp.add_argument("--replay-config", default=None,
                      help="with --promotion: replay YAML (thresholds, slices)")
    comp.add_argument("--image", default="tandem-pipeline:latest",
                      help="container image with tandem installed (deploy/pipeline.Dockerfile)")
    comp.add_argument("--pipeline-root", default=None,
                      help="where artifacts go on the cluster, e.g. gs://bucket/tandem")
    comp.add_argument("--schema-uri", default=None,
                      help="curated schema path as the cluster sees it (default: config's)")
    comp.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                      help="override a config key")
    comp.set_defaults(func=cmd_compile)

    add_serving_commands(sub)

    mon = sub.add_parser("monitor", help="drift and skew in logged traffic, per window")
    mon.add_argument("--logs", required=True, help="request-log directory, file or glob")
    mon.add_argument("--config", required=True,
                     help="pipeline config (name or path): schema, label, monitor: thresholds")
    mon.add_argument("--out", required=True, help="where statistics, anomalies and reports go")
    window = mon.add_mutually_exclusive_group()
    window.add_argument("--window", default=None, metavar="DURATION",
                        help="window by arrival time, e.g. 15m, 1h")
    window.add_argument("--window-records", type=int, default=None, metavar="N",
                        help="window by N logged requests (default: monitor.window_records)")
    mon.add_argument("--training-statistics", default=None, metavar="PATH",
                     help="the served model's training statistics (default: found in ML "
                          "Metadata through the model version that answered)")
    mon.add_argument("--training-examples", default=None, metavar="GLOB",
                     help="training tf.Examples (TFRecord): feature-value skew, joined by id")
    mon.add_argument("--labels", default=None, metavar="FILE",
                     help="late labels (request_id,label[,timestamp]): label drift too")
    mon.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                     help="override a config key, e.g. monitor.drift.psi=0.1")
    mon.add_argument("--pipeline", action="store_true",
                     help="run it as the TFX monitoring pipeline (TrafficMonitor; ML Metadata "
                          "in --out/metadata.sqlite)")
    mon.add_argument("beam_args", nargs="*", help="after --: Beam pipeline args")
    mon.set_defaults(func=cmd_monitor)

    report = sub.add_parser("report", help="self-contained HTML reports")
    report_sub = report.add_subparsers(dest="report_command", required=True, metavar="KIND")
    rs = report_sub.add_parser("stats", help="render TFDV statistics (one file or two)")
    rs.add_argument("path", help="statistics: a StatisticsGen artifact dir, FeatureStats.pb, "
                                 "text format or TFRecord")
    rs.add_argument("--compare", default=None, metavar="PATH",
                    help="a second statistics file, drawn side by side with drift measures")
    rs.add_argument("--schema", default=None, help="schema (text): domains and anomalies")
    rs.add_argument("--out", required=True, metavar="FILE.html")
    rs.set_defaults(func=cmd_report_stats)

    shadow = sub.add_parser("shadow", help="compare a candidate with the serving model")
    shadow_sub = shadow.add_subparsers(dest="shadow_command", required=True, metavar="ACTION")
    replay = shadow_sub.add_parser(
        "replay", help="replay logged requests through models A and B and gate on how they differ")
    replay.add_argument("--logs", required=True, help="request-log directory, file or glob")
    replay.add_argument("--baseline", required=True, help="model A: the version that served")
    replay.add_argument("--candidate", required=True, help="model B")
    replay.add_argument("--out", required=True, help="where the report goes")
    replay.add_argument("--config", default=None,
                        help="replay YAML: thresholds, slices, top_n, batch_size")
    replay.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                        help="override a replay config key, e.g. thresholds.max_flip_rate=0.02")
    replay.add_argument("--labels", default=None, metavar="FILE",
                        help="late labels (request_id,label[,timestamp] CSV or TFRecord): adds "
                             "A's and B's quality on the replayed traffic")
    replay.add_argument("beam_args", nargs="*", help="after --: Beam pipeline args")
    replay.set_defaults(func=cmd_shadow_replay)
    validate = shadow_sub.add_parser(
        "validate", help="run the promotion pipeline (TFX ShadowValidator, ML Metadata) locally")
    validate.add_argument("--logs", required=True, help="request-log directory")
    validate.add_argument("--baseline", required=True, help="model A: the version that served")
    validate.add_argument("--candidate", required=True, help="model B")
    validate.add_argument("--out", required=True,
                          help="pipeline root and ML Metadata (metadata.sqlite) go here")
    validate.add_argument("--config", default=None, help="replay YAML")
    validate.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                          help="override a replay config key")
    validate.set_defaults(func=cmd_shadow_validate)

    model = sub.add_parser("model", help="inspect what a model was built from")
    model_sub = model.add_subparsers(dest="model_command", required=True, metavar="ACTION")
    inspect = model_sub.add_parser("inspect", help="print a model's build record")
    inspect.add_argument("path", help="SavedModel dir, version dir, or serving base dir")
    inspect.set_defaults(func=cmd_model_inspect)
    diff = model_sub.add_parser("diff", help="what changed between two models' build records")
    diff.add_argument("a")
    diff.add_argument("b")
    diff.set_defaults(func=cmd_model_diff)
    _add_verbose_everywhere(parser)
    return parser


def _add_verbose_everywhere(parser: argparse.ArgumentParser) -> None:
    """`--verbose` is accepted after any subcommand too (`tandem run ... --verbose`)."""
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for child in action.choices.values():
                if not any("--verbose" in a.option_strings for a in child._actions):
                    # SUPPRESS: an unset flag must not override `tandem --verbose run ...`.
                    child.add_argument("--verbose", action="store_true", default=argparse.SUPPRESS,
                                       help="show library logs and, on failure, the full trace")
                _add_verbose_everywhere(child)


def _quiet_libraries(verbose: bool) -> None:
    """Library chatter (deprecations, Beam worker warnings) hides tandem's own output."""
    import logging
    import warnings

    if verbose:
        return
    # Beam worker processes inherit this (added to whatever the user set, not replacing it):
    # TFMA's metrics divide by zero on empty slices and numpy warns about it from the workers.
    quiet = "ignore::FutureWarning,ignore::DeprecationWarning,ignore::RuntimeWarning"
    current = os.environ.get("PYTHONWARNINGS", "")
    if quiet not in current:
        os.environ["PYTHONWARNINGS"] = f"{current},{quiet}" if current else quiet
    warnings.filterwarnings("ignore", category=FutureWarning)
    warnings.filterwarnings("ignore", category=DeprecationWarning)
    warnings.filterwarnings("ignore", category=UserWarning)
    warnings.filterwarnings("ignore", category=RuntimeWarning)
    for name in ("tensorflow", "apache_beam", "absl"):
        logging.getLogger(name).setLevel(logging.ERROR)
    from tandem.pipeline.quiet import quiet_root_logger

    quiet_root_logger()  # before Beam's logging.basicConfig() prints INFO:absl:... lines


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    verbose = getattr(args, "verbose", False)
    _quiet_libraries(verbose)
    noise_filter = None
    # Beam workers write the teardown noise; only the commands that run Beam need the filter.
    if not verbose and getattr(args, "func", None) in (
            cmd_run, cmd_retrain, cmd_loop, cmd_schema_propose, cmd_shadow_replay,
            cmd_shadow_validate, cmd_monitor, cmd_report_stats):
        from tandem.pipeline.quiet import StderrFilter

        noise_filter = StderrFilter()
    try:
        return _call(args, verbose)
    finally:
        if noise_filter is not None:
            noise_filter.close()


def _call(args: argparse.Namespace, verbose: bool) -> int:
    try:
        return args.func(args)
    except exit_status.BadInputError as e:  # every module's bad-input error, CommandError too
        print(f"tandem: error: {e}", file=sys.stderr)
        return exit_status.BAD_INPUT
    except KeyboardInterrupt:
        print("tandem: interrupted", file=sys.stderr)
        return exit_status.INTERRUPTED
    except Exception as e:  # noqa: BLE001 - the one place an unexpected failure is reported
        if verbose:
            import traceback

            traceback.print_exc()
        print(f"tandem: unexpected error: {_one_line(e)}"
              f"{'' if verbose else ' (run with --verbose for the full trace)'}", file=sys.stderr)
        return exit_status.UNEXPECTED


def _one_line(error: BaseException) -> str:
    text = " ".join(str(error).split()) or "(no message)"
    if len(text) > 300:
        text = text[:297] + "..."
    return f"{type(error).__name__}: {text}"


if __name__ == "__main__":
    sys.exit(main())
