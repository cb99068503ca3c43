"""The `tandem` command line: data, schema and pipeline subcommands."""

from __future__ import annotations

import argparse
import os
import sys
import time

os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

from pipeline import exit_status  # noqa: E402

EXIT_BAD_INPUT = exit_status.BAD_INPUT


class CommandError(Exception):
    """An error reported as one line and exit status 2."""


def _progress_printer(label: str):
    last = [0.0]

    def report(done: int, total: int) -> None:
        now = time.monotonic()
        if done == total or now - last[0] >= 2.0:
            last[0] = now
            print(f"{label}: {done:,}/{total:,} rows ({100 * done / total:.0f}%)", flush=True)

    return report


def cmd_data_generate(args: argparse.Namespace) -> int:
    from components.datasets import listening

    drift = listening.parse_drift(args.drift)
    formats = ("tfrecord", "csv") if args.format == "both" else (args.format,)
    start = time.monotonic()
    manifest = listening.generate(
        args.out, args.rows, seed=args.seed, drift=drift, span=args.span, formats=formats,
        progress=_progress_printer("generate"),
    )
    print(
        f"wrote {manifest['rows']:,} rows (skip rate {manifest['skip_rate']:.1%}"
        f"{', drift: ' + ', '.join(manifest['drift']) if manifest['drift'] else ''}) to "
        f"{os.path.join(args.out, f'span-{args.span}')} and feature sources to "
        f"{manifest['feature_sources']} in {time.monotonic() - start:.1f}s"
    )
    return 0


def cmd_data_profiles(args: argparse.Namespace) -> int:
    from components.datasets import listening

    for name, text in sorted(listening.DRIFT_PROFILES.items()):
        print(f"{name:<18} {text}")
    return 0


def cmd_schema_propose(args: argparse.Namespace) -> int:
    from components.statistics import compute_statistics
    from pipeline.beam import beam_pipeline_args
    from pipeline.config import load_config
    from pipeline.preflight import check_data
    from schemas import SchemaError, load_schema, write_schema
    from schemas.propose import diff_schemas, propose_schema

    config = load_config(args.config, args.set)
    summary = check_data(config)  # a mistyped label is named now, not after the statistics
    # Read the curated schema before writing: --out may be the curated file itself.
    try:
        curated = load_schema(config.schema)
    except SchemaError:
        curated = None
    where = f"span {summary.span} " if summary.span is not None else ""
    print(f"computing statistics over {where}{summary.glob} ...", flush=True)
    stats = compute_statistics(summary.glob, config.data.format, beam_pipeline_args(config))
    try:
        schema = propose_schema(stats, config.label, config.problem_type, config.data.format)
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
    from pipeline.config import load_config
    from pipeline.runner import run

    config = load_config(args.config, args.set)
    result = run(config, until=args.until, verbose=getattr(args, "verbose", False))
    return result.exit_code


def cmd_compile(args: argparse.Namespace) -> int:
    from pipeline.config import load_config
    from pipeline.kubeflow import compile_kubeflow

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
    from components.build_record import RecordError, format_record, load_record

    try:
        record = load_record(args.path)
    except RecordError as e:
        raise CommandError(str(e)) from None
    print(format_record(record))
    return 0


def cmd_model_diff(args: argparse.Namespace) -> int:
    from components.build_record import RecordError, diff_records, load_record

    try:
        a, b = load_record(args.a), load_record(args.b)
    except RecordError as e:
        raise CommandError(str(e)) from None
    lines = diff_records(a, b)
    if not lines:
        print("no differences in what the two models were built from")
    for line in lines:
        print(line)
    return 0


def cmd_serve_models(args: argparse.Namespace) -> int:
    import dataclasses
    import signal

    from serving.errors import ServingError
    from serving.flags import ignored
    from serving.model_config import ConfigFileError
    from serving.server import ModelServer, ServerOptions

    if args.version:
        from importlib.metadata import version

        print(f"TensorFlow ModelServer (tandem embedded server {version('tandem')}, "
              f"TF Serving 2.16 API)")
        return 0
    for notice in ignored(args):
        print(f"tandem serve models: {notice}", file=sys.stderr)
    if args.model_base_path and not args.model_name:
        args.model_name = "default"  # TF Serving's default model name
    names = {f.name for f in dataclasses.fields(ServerOptions)}
    options = ServerOptions(**{k: v for k, v in vars(args).items() if k in names})
    try:
        server = ModelServer(options)
        server.start()
    except (ConfigFileError, ServingError) as e:
        raise CommandError(str(e)) from None
    except OSError as e:
        raise CommandError(f"cannot start the server: {e}") from None
    for name, entry in sorted(server.manager.models().items()):
        versions = entry.available()
        labels = ", ".join(f"{k}={v}" for k, v in sorted(entry.labels.items()))
        print(f"model '{name}': serving version(s) {versions or 'none yet'}"
              f"{' (' + labels + ')' if labels else ''} from {entry.config.base_path}")
    rest = f", REST and metrics on {options.host}:{server.rest_port}" if server.rest_port else ""
    print(f"gRPC on {options.host}:{server.grpc_port}{rest}", flush=True)
    signal.signal(signal.SIGTERM, lambda *_: server._stop.set())
    try:
        server.wait()
    except KeyboardInterrupt:
        pass
    server.stop()
    print("server stopped", flush=True)
    return 0


def _replicas(text: str | None) -> list[str]:
    """--replicas as a list of gRPC addresses; each must be HOST:PORT (or [IPv6]:PORT)."""
    import re

    addresses = [a.strip() for a in (text or "").split(",") if a.strip()]
    for address in addresses:
        if not re.fullmatch(r"(\[[0-9a-fA-F:.]+\]|[^\s:\[\]]+):\d{1,5}", address):
            raise CommandError(f"--replicas: {address!r} is not HOST:PORT")
    if text is not None and not addresses:
        raise CommandError("--replicas names no address (give HOST:PORT,HOST:PORT)")
    return addresses


def cmd_promote(args: argparse.Namespace) -> int:
    from serving.model_config import ConfigFileError
    from serving.promotion import PromotionError, promote, promote_replicas

    try:
        if args.replicas:
            steps = promote_replicas(args.config, _replicas(args.replicas), args.model,
                                     args.version, args.label, timeout=args.timeout,
                                     apply=args.apply)
        else:
            steps = promote(args.config, args.server, args.model, args.version, args.label)
    except (PromotionError, ConfigFileError) as e:
        raise CommandError(str(e)) from None
    for step in steps:
        print(step)
    return 0


def cmd_rollback(args: argparse.Namespace) -> int:
    from serving.model_config import ConfigFileError
    from serving.promotion import PromotionError, rollback

    try:
        steps = rollback(args.config, args.server, args.model, args.to,
                         replicas=_replicas(args.replicas), timeout=args.timeout,
                         apply=args.apply)
    except (PromotionError, ConfigFileError) as e:
        raise CommandError(str(e)) from None
    for step in steps:
        print(step)
    return 0


def build_parser() -> argparse.ArgumentParser:
    from pipeline.config import STAGES

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

    comp = sub.add_parser("compile", help="compile the pipeline for Kubeflow Pipelines")
    comp.add_argument("--kubeflow", required=True, metavar="OUT.json", help="output spec path")
    comp.add_argument("--config", required=True, help="pipeline config YAML (or a name)")
    comp.add_argument("--image", default="tandem-pipeline:latest",
                      help="container image with tandem installed (deploy/pipeline.Dockerfile)")
    comp.add_argument("--pipeline-root", default=None,
                      help="where artifacts go on the cluster, e.g. gs://bucket/tandem")
    comp.add_argument("--schema-uri", default=None,
                      help="curated schema path as the cluster sees it (default: config's)")
    comp.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                      help="override a config key")
    comp.set_defaults(func=cmd_compile)

    serve = sub.add_parser("serve", help="online serving")
    serve_sub = serve.add_subparsers(dest="serve_command", required=True, metavar="WHAT")
    srv = serve_sub.add_parser(
        "models", help="the embedded TF Serving-compatible model server (flags as TF Serving's)"
    )
    from serving.flags import add_flags

    add_flags(srv)
    srv.set_defaults(func=cmd_serve_models)

    for name, func, text in (("promote", cmd_promote, "point a label at a version, safely"),
                             ("rollback", cmd_rollback, "point stable back at a good version")):
        p = sub.add_parser(name, help=text)
        p.add_argument("--model", required=True, help="model name")
        if name == "promote":
            p.add_argument("--version", type=int, required=True)
            p.add_argument("--label", choices=("canary", "stable"), required=True)
        else:
            p.add_argument("--to", type=int, default=None,
                           help="version to roll back to (default: the previous stable)")
        p.add_argument("--config", default="deploy/models.config",
                       help="the server's model config file (rewritten atomically)")
        p.add_argument("--server", default="127.0.0.1:8500",
                       help="one server's gRPC address: steps go through its reload RPC")
        p.add_argument("--replicas", default=None, metavar="HOST:PORT,...",
                       help="servers that poll --config: each step is written to the file and "
                            "waits until every replica shows it (instead of --server)")
        p.add_argument("--apply", default=None, metavar="COMMAND",
                       help="with --replicas: a shell command run after each step is written "
                            "({} is the config file), e.g. one that updates the ConfigMap")
        p.add_argument("--timeout", type=float, default=300.0,
                       help="seconds to wait for the replicas at each step (default 300)")
        p.set_defaults(func=func)

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


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    verbose = getattr(args, "verbose", False)
    _quiet_libraries(verbose)
    noise_filter = None
    # Beam workers write the teardown noise; only the commands that run Beam need the filter.
    if not verbose and getattr(args, "func", None) in (cmd_run, cmd_schema_propose):
        from pipeline.quiet import StderrFilter

        noise_filter = StderrFilter()
    try:
        return _call(args, verbose)
    finally:
        if noise_filter is not None:
            noise_filter.close()


def _call(args: argparse.Namespace, verbose: bool) -> int:
    from components.datasets.listening import GeneratorError
    from pipeline.config import ConfigError
    from pipeline.preflight import InputError

    try:
        return args.func(args)
    except (CommandError, ConfigError, InputError, GeneratorError) as e:
        print(f"tandem: error: {e}", file=sys.stderr)
        return EXIT_BAD_INPUT
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
