"""The serving subcommands of `tandem`: the model server, the gateway, promotion and rollback,
feature sources and request logs. Serving never imports the pipeline; `tandem.pipeline.cli` mounts
these under its parser."""

from __future__ import annotations

import argparse
import sys

from tandem.schemas import exit_status
from tandem.schemas.exit_status import BadInputError


class CommandError(BadInputError):
    """An error reported as one line and exit status 2."""


def cmd_serve_models(args: argparse.Namespace) -> int:
    import dataclasses

    from tandem.serving.errors import ServingError
    from tandem.serving.model_server.flags import ignored
    from tandem.serving.model_server.model_config import ConfigFileError
    from tandem.serving.model_server.server import ModelServer, ServerOptions

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
    return _serve_until_stopped(server, options.host, server.grpc_port, "server")


def _serve_until_stopped(server, host: str, port: int, what: str) -> int:
    """Print where it listens, then run until SIGTERM or Ctrl-C and stop cleanly."""
    import signal

    rest = f", REST and metrics on {host}:{server.rest_port}" if server.rest_port else ""
    print(f"gRPC on {host}:{port}{rest}", flush=True)
    signal.signal(signal.SIGTERM, lambda *_: server._stop.set())
    try:
        server.wait()
    except KeyboardInterrupt:
        pass
    server.stop()
    print(f"{what} stopped", flush=True)
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


def _check_replica_flags(args: argparse.Namespace) -> None:
    """--apply and --timeout act on the replicas' config file: refused where they would be
    silently ignored, or could never be met."""
    if args.apply and not args.replicas:
        raise CommandError("--apply needs --replicas (with --server, each step goes through "
                           "the server's reload RPC and no file is published)")
    if not args.timeout > 0:
        raise CommandError(f"--timeout must be positive, got {args.timeout:g}")


def cmd_promote(args: argparse.Namespace) -> int:
    from tandem.serving.model_server.model_config import ConfigFileError
    from tandem.serving.promotion import PromotionError, promote, promote_replicas

    _check_replica_flags(args)
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


def _traffic_drifts() -> list[str]:
    from tandem.serving.traffic import DRIFTS

    return list(DRIFTS)


def cmd_traffic_send(args: argparse.Namespace) -> int:
    from tandem.serving.traffic import send

    pace = f"{args.rate:g} requests/s" if args.rate else "as fast as answers come"
    print(f"traffic: sending {args.examples} to {args.to}, {pace}", flush=True)
    result = send(args.to, args.examples, args.model, rate=args.rate, batch=args.batch,
                  limit=args.limit, drift=args.drift,
                  progress=lambda line: print(line, flush=True))
    errors = ", ".join(f"{k} {v}" for k, v in sorted(result.errors.items())) or "none"
    print(f"sent {result.sent:,} requests in {result.seconds:.1f}s "
          f"({result.sent / max(result.seconds, 1e-9):.0f}/s): {result.ok:,} answered, "
          f"errors: {errors}")
    return exit_status.OK if not result.errors else exit_status.CHECK_FAILED


def cmd_rollback(args: argparse.Namespace) -> int:
    from tandem.serving.model_server.model_config import ConfigFileError
    from tandem.serving.promotion import PromotionError, rollback

    _check_replica_flags(args)
    try:
        steps = rollback(args.config, args.server, args.model, args.to,
                         replicas=_replicas(args.replicas), timeout=args.timeout,
                         apply=args.apply, label=args.label)
    except (PromotionError, ConfigFileError) as e:
        raise CommandError(str(e)) from None
    for step in steps:
        print(step)
    return 0


def cmd_serve_gateway(args: argparse.Namespace) -> int:
    from tandem.serving.gateway.config import GatewayConfigError, load_config
    from tandem.serving.gateway.sources import SourceError, check_source

    try:  # what can be checked before TensorFlow loads, answered at once
        config = load_config(args.config, args.set)
        check_source(config.decorate.sqlite, config.decorate.redis, config.join_list())
    except (GatewayConfigError, SourceError) as e:
        raise CommandError(str(e)) from None
    from tandem.serving.errors import ServingError
    from tandem.serving.gateway.server import GatewayServer

    try:
        server = GatewayServer(config, host=args.host, port=args.port,
                               rest_api_port=args.rest_api_port,
                               max_request_bytes=args.max_request_bytes)
        server.start()
    except (GatewayConfigError, SourceError, ServingError, ValueError) as e:
        raise CommandError(str(e)) from None
    except OSError as e:
        raise CommandError(f"cannot start the gateway: {e}") from None
    g = server.gateway
    joins = ", ".join(f"{j.key}->{j.table}" for j in g.joins) or "none (pass-through)"
    print(f"gateway: primary {config.primary.address}"
          f"{' (model ' + config.primary.model_name + ')' if config.primary.model_name else ''}"
          f", shadow {config.shadow.address + ' (' + config.shadow.model_name + ', ' + format(config.shadow.sample_percent, 'g') + '%)' if g.mirror else 'off'}")
    print(f"decorate: {joins}"
          f"{' from ' + g.source.kind + ' ' + g.source.version if g.source else ''}; "
          f"validate: {len(g.validator.checks)} features ({config.validate.policy}"
          f"{', reject: ' + ', '.join(sorted(g.reject_features)) if g.reject_features and config.validate.policy != 'reject' else ''})"
          f"; log: {config.log.dir + ' (' + format(config.log.sample_percent, 'g') + '%)' if config.log.dir else 'off'}")
    return _serve_until_stopped(server, args.host, server.port, "gateway")


def cmd_features_load(args: argparse.Namespace) -> int:
    import time

    from tandem.serving.gateway.sources import SourceError, copy_to_redis

    start = time.monotonic()

    def progress(table: str, n: int) -> None:
        print(f"load: {table}: {n:,} rows", flush=True)

    try:
        counts = copy_to_redis(args.sqlite, args.to, prefix=args.prefix, progress=progress)
    except SourceError as e:
        raise CommandError(str(e)) from None
    tables = ", ".join(f"{t} ({n:,} rows)" for t, n in counts.items())
    print(f"loaded {tables} into {args.to} in {time.monotonic() - start:.1f}s")
    return 0


def _log_summary(record) -> dict:
    verdict = record.verdict
    return {
        "request_id": record.request_id, "role": record.role, "time": record.timestamp,
        "model": record.model_name, "version": record.model_version,
        "examples": len(record.example_ids),
        "flagged": sorted(int(i) for i in verdict.get("violations", {})),  # example indices
        "rejected": bool(verdict.get("rejected")),
        "error": record.error["code"] if record.error else None,
    }


def cmd_logs_cat(args: argparse.Namespace) -> int:
    import json

    from google.protobuf import json_format
    from tensorflow.core.example import example_pb2

    from tandem.schemas.request_log import ReadStats, read_records

    if args.limit is not None and args.limit < 0:
        raise CommandError(f"--limit must be at least 0, got {args.limit}")
    stats = ReadStats()
    try:
        for n, record in enumerate(read_records(args.path, stats)):
            if args.limit is not None and n >= args.limit:
                break
            line = _log_summary(record)
            if args.examples:
                line["examples"] = [
                    json_format.MessageToDict(example_pb2.Example.FromString(e))
                    for e in record.examples()]
            if args.full:
                line["verdict"] = record.verdict
                line["sources"] = record.sources
                line["error"] = record.error
            print(json.dumps(line, sort_keys=True))
    except BrokenPipeError:
        return 0
    if stats.torn or stats.corrupt or stats.unreadable:
        print(f"skipped: {stats.torn} torn, {stats.corrupt} corrupt, {stats.unreadable} "
              "unreadable record(s)", file=sys.stderr)
    return 0


def cmd_logs_stats(args: argparse.Namespace) -> int:
    import collections
    import json
    import time

    from tandem.schemas.request_log import PRIMARY, ReadStats, read_records

    stats = ReadStats()
    roles: collections.Counter = collections.Counter()
    versions: collections.Counter = collections.Counter()
    errors: collections.Counter = collections.Counter()
    anomalies: collections.Counter = collections.Counter()
    sources: collections.Counter = collections.Counter()
    examples = flagged = rejected = unknown = 0
    first = last = None
    for record in read_records(args.path, stats):
        roles[record.role] += 1
        if record.error:
            errors[f"{record.role}:{record.error['code']}"] += 1
        if record.role != PRIMARY:
            continue
        versions[f"{record.model_name}/{record.model_version}"] += 1
        examples += len(record.example_ids)
        violations = record.verdict.get("violations", {})
        flagged += len(violations)
        unknown += len(record.verdict.get("unknown_entities", {}))
        rejected += bool(record.verdict.get("rejected"))
        for found in violations.values():
            anomalies.update(found)
        for kind, version in record.sources.items():
            sources[f"{kind}:{version}"] += 1
        first = record.timestamp if first is None else min(first, record.timestamp)
        last = record.timestamp if last is None else max(last, record.timestamp)
    summary = {
        "files": stats.files, "records": stats.records, "by_role": dict(roles),
        "examples": examples, "flagged_examples": flagged, "rejected_requests": rejected,
        "examples_with_unknown_entities": unknown, "model_versions": dict(versions),
        "errors": dict(errors), "violations": dict(anomalies.most_common()),
        "feature_sources": dict(sources),
        "first": first, "last": last,
        "skipped": {"torn": stats.torn, "corrupt": stats.corrupt,
                    "unreadable": stats.unreadable},
    }
    if args.json:
        print(json.dumps(summary, indent=2, sort_keys=True))
        return 0

    def fmt(t: int | None) -> str:
        return time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(t)) if t else "-"

    print(f"{stats.records:,} records in {stats.files} file(s), {fmt(first)} to {fmt(last)} UTC")
    print(f"  by role:        {', '.join(f'{k} {v:,}' for k, v in sorted(roles.items()))}")
    print(f"  examples:       {examples:,} ({flagged:,} flagged, {unknown:,} with unknown "
          f"entities; {rejected:,} requests rejected)")
    print(f"  model versions: {', '.join(f'{k} ({v:,})' for k, v in sorted(versions.items())) or '-'}")
    print(f"  sources:        {', '.join(sorted(sources)) or '-'}")
    if errors:
        print(f"  errors:         {', '.join(f'{k} {v:,}' for k, v in sorted(errors.items()))}")
    for violation, n in anomalies.most_common(10):
        print(f"  violation:      {violation} x{n:,}")
    if stats.torn or stats.corrupt or stats.unreadable:
        print(f"  skipped:        {stats.torn} torn, {stats.corrupt} corrupt, "
              f"{stats.unreadable} unreadable")
    return 0


def add_serving_commands(sub) -> None:
    """Mount `serve`, `promote`, `rollback`, `features` and `logs` on a subparsers object."""
    serve = sub.add_parser("serve", help="online serving")
    serve_sub = serve.add_subparsers(dest="serve_command", required=True, metavar="WHAT")
    srv = serve_sub.add_parser(
        "models", help="the embedded TF Serving-compatible model server (flags as TF Serving's)"
    )
    from tandem.serving.model_server.flags import add_flags

    add_flags(srv)
    srv.set_defaults(func=cmd_serve_models)
    gw = serve_sub.add_parser(
        "gateway", help="the gateway: decorate, validate, log, predict, mirror (TF Serving's API)")
    gw.add_argument("--config", required=True, help="gateway config YAML "
                    "(deploy/gateway/listening.yaml)")
    gw.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                    help="override a config key, e.g. primary.address=127.0.0.1:8500")
    gw.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1)")
    gw.add_argument("--port", type=int, default=8600, help="gRPC port (default 8600)")
    gw.add_argument("--rest_api_port", type=int, default=0,
                    help="REST and metrics port (default 0: no REST)")
    gw.add_argument("--max_request_bytes", type=int, default=64 << 20,
                    help="largest request accepted, gRPC and REST (default 64 MiB)")
    gw.set_defaults(func=cmd_serve_gateway)

    features = sub.add_parser("features", help="feature sources")
    features_sub = features.add_subparsers(dest="features_command", required=True,
                                           metavar="ACTION")
    load = features_sub.add_parser("load", help="copy the SQLite feature tables into Redis")
    load.add_argument("--sqlite", default="data/listening/features.sqlite",
                      help="the generator's feature file (default data/listening/features.sqlite)")
    load.add_argument("--to", required=True, metavar="redis://HOST:PORT")
    load.add_argument("--prefix", default="tandem", help="key prefix (default tandem)")
    load.set_defaults(func=cmd_features_load)

    logs = sub.add_parser("logs", help="read request logs")
    logs_sub = logs.add_subparsers(dest="logs_command", required=True, metavar="ACTION")
    cat = logs_sub.add_parser("cat", help="one JSON line per logged request")
    cat.add_argument("path", help="a log directory, file or glob")
    cat.add_argument("--limit", type=int, default=None, help="stop after N records")
    cat.add_argument("--examples", action="store_true", help="include the decorated examples")
    cat.add_argument("--full", action="store_true", help="include verdicts and sources")
    cat.set_defaults(func=cmd_logs_cat)
    st = logs_sub.add_parser("stats", help="counts over the logged requests")
    st.add_argument("path", help="a log directory, file or glob")
    st.add_argument("--json", action="store_true", help="print JSON")
    st.set_defaults(func=cmd_logs_stats)

    traffic = sub.add_parser("traffic", help="send requests to a gateway or model server")
    traffic_sub = traffic.add_subparsers(dest="traffic_command", required=True,
                                         metavar="ACTION")
    ts = traffic_sub.add_parser("send", help="send tf.Examples as Predict requests at a rate")
    ts.add_argument("--to", required=True, metavar="HOST:PORT", help="gRPC address")
    ts.add_argument("--examples", required=True, metavar="GLOB",
                    help="TFRecord files of tf.Examples (e.g. from data generate --requests)")
    ts.add_argument("--model", default="listening", help="model name in the requests")
    ts.add_argument("--rate", type=float, default=100.0,
                    help="requests per second (0: as fast as answers come; default 100)")
    ts.add_argument("--batch", type=int, default=1, help="examples per request (default 1)")
    ts.add_argument("--limit", type=int, default=None, help="send at most N examples")
    ts.add_argument("--drift", default=None,
                    help="client-side drift: " + ", ".join(sorted(_traffic_drifts())))
    ts.set_defaults(func=cmd_traffic_send)

    for name, func, text in (("promote", cmd_promote, "point a label at a version, safely"),
                             ("rollback", cmd_rollback, "point stable (or canary) back at a good version")):
        p = sub.add_parser(name, help=text)
        p.add_argument("--model", required=True, help="model name")
        if name == "promote":
            p.add_argument("--version", type=int, required=True)
            p.add_argument("--label", choices=("canary", "stable"), required=True)
        else:
            p.add_argument("--to", type=int, default=None,
                           help="version to roll back to (default: the previous stable; with "
                                "--label canary: the stable version)")
            p.add_argument("--label", choices=("canary", "stable"), default="stable",
                           help="stable (default): back to the previous good version; canary: "
                                "a rejected candidate's label back to stable's version")
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
