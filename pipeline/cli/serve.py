"""`tandem serve`: the online path, the embedded TF Serving-compatible model server and the
gateway in front of it (decorate, validate, log, predict, mirror)."""

from __future__ import annotations

import argparse
import os
import signal
import sys
import threading

from tandem.pipeline.cli.errors import CommandError
from tandem.pipeline.cli.flags import add_group, add_set


def cmd_serve_models(args: argparse.Namespace) -> int:
    import dataclasses

    from tandem.serving.errors import ServingError
    from tandem.serving.model_server.flags import ignored
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
    except ServingError as e:
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


def cmd_serve_gateway(args: argparse.Namespace) -> int:
    from tandem.serving.gateway.config import load_config
    from tandem.serving.gateway.sources import check_source

    # What can be checked before TensorFlow loads, answered at once.
    config = load_config(args.gateway_config, args.set)
    _use_promoted_source(config, args.gateway_config)
    check_source(config.decorate.sqlite, config.decorate.redis, config.join_list())
    if args.workers < 1:
        raise CommandError(f"--workers: expected at least 1, got {args.workers}")
    if args.workers > 1:
        return _serve_workers(args)
    from tandem.serving.errors import ServingError
    from tandem.serving.gateway.server import GatewayServer

    try:
        server = GatewayServer(config, host=args.host, port=args.port,
                               rest_api_port=args.rest_api_port,
                               max_request_bytes=args.max_request_bytes,
                               reuse_port=args.reuse_port)
        server.start()
    except (ServingError, ValueError) as e:  # the rest is bad input already (exit 2)
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
    from tandem.serving.gateway import snapshots

    registered = snapshots.register(args.gateway_config)
    signal.signal(signal.SIGHUP, lambda *_: threading.Thread(
        target=_switch_source, args=(server.gateway, args.gateway_config, config),
        daemon=True).start())
    try:
        return _serve_until_stopped(server, args.host, server.port, "gateway")
    finally:
        os.remove(registered)


def _own_source(config) -> str:
    return config.decorate.redis or config.decorate.sqlite


def _use_promoted_source(config, path: str) -> None:
    """A snapshot promoted for this config (`tandem features promote`) replaces the source the
    config names."""
    from tandem.serving.gateway import snapshots

    promoted = snapshots.current(path)
    if promoted:
        redis = "://" in promoted
        config.decorate.redis, config.decorate.sqlite = (promoted, "") if redis else (
            "", promoted)


def _switch_source(gateway, path: str, config) -> None:
    """SIGHUP: decorate from the config's current snapshot (promoted, or its own) from the
    next request on; a snapshot that cannot be used leaves the current one, said in a line."""
    from tandem.serving.gateway import snapshots
    from tandem.serving.gateway.sources import SourceError

    try:
        spec = snapshots.current(path) or _own_source(config)
        snapshot = gateway.switch_source(spec)
    except SourceError as e:
        was = ", ".join(f"{k} {v}" for k, v in gateway.source_versions.items())
        print(f"gateway: kept {was}: {e}", file=sys.stderr, flush=True)
        return
    print(f"gateway: decorating from {snapshot.source.kind} {snapshot.source.version} "
          f"({spec})", flush=True)


def _serve_workers(args: argparse.Namespace) -> int:
    """`--workers N`: N gateway processes sharing the ports (serving/gateway/workers.py),
    until SIGTERM or Ctrl-C (SIGHUP is passed on: each worker switches feature snapshots);
    0 when stopped, 3 when a worker exited on its own."""
    from tandem.schemas.exit_status import UNEXPECTED
    from tandem.serving.gateway.workers import Workers, reserve_port

    held = []
    try:
        sock, port = reserve_port(args.host, args.port)
        held.append(sock)
        rest_port = 0
        if args.rest_api_port:
            sock, rest_port = reserve_port(args.host, args.rest_api_port)
            held.append(sock)
    except OSError as e:
        for sock in held:
            sock.close()
        raise CommandError(f"cannot start the gateway: {e}") from None

    def command(_: int) -> list[str]:
        sets = [a for s in args.set for a in ("--set", s)]
        return [sys.executable, "-m", "tandem.pipeline.cli", "serve", "gateway",
                "--gateway-config", args.gateway_config, *sets, "--host", args.host,
                "--port", str(port), "--rest_api_port", str(rest_port),
                "--max_request_bytes", str(args.max_request_bytes), "--reuse-port",
                *(["--verbose"] if getattr(args, "verbose", False) else [])]

    workers = Workers(args.workers, command)
    try:
        ready = workers.start()
    except OSError as e:
        raise CommandError(f"cannot start the gateway: {e}") from None
    finally:
        for sock in held:  # the workers listen on the ports now
            sock.close()
    for line in ready[0][:-1]:  # what the first worker said of the config
        print(line)
    print(f"gateway: {args.workers} workers (pids "
          f"{', '.join(str(p.pid) for p in workers.procs)}) share the ports")
    rest = f", REST and metrics on {args.host}:{rest_port}" if rest_port else ""
    print(f"gRPC on {args.host}:{port}{rest}", flush=True)
    signal.signal(signal.SIGTERM, lambda *_: workers.request_stop())
    signal.signal(signal.SIGHUP, lambda *_: workers.signal(signal.SIGHUP))
    try:
        died = workers.wait()
    except KeyboardInterrupt:
        died = None
    workers.stop()
    if died is not None:
        print(f"tandem: error: a gateway worker exited with status {died}; the others were "
              "stopped", file=sys.stderr)
        return UNEXPECTED
    print("gateway stopped", flush=True)
    return 0


def register(sub) -> None:
    serve_sub = add_group(sub, "serve", "the model server and the gateway", metavar="WHAT")
    srv = serve_sub.add_parser(
        "models", help="the embedded TF Serving-compatible model server (flags as TF Serving's)"
    )
    from tandem.serving.model_server.flags import add_flags

    add_flags(srv)
    srv.set_defaults(func=cmd_serve_models)
    gw = serve_sub.add_parser(
        "gateway", help="the gateway: decorate, validate, log, predict, mirror (TF Serving's API)")
    gw.add_argument("--gateway-config", required=True, metavar="FILE",
                    help="gateway config YAML (deploy/gateway/listening.yaml)")
    add_set(gw, help="override a gateway config key, e.g. primary.address=127.0.0.1:8500")
    gw.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1)")
    gw.add_argument("--port", type=int, default=8600, help="gRPC port (default 8600)")
    gw.add_argument("--rest_api_port", type=int, default=0,
                    help="REST and metrics port (default 0: no REST)")
    gw.add_argument("--max_request_bytes", type=int, default=64 << 20,
                    help="largest request accepted, gRPC and REST (default 64 MiB)")
    gw.add_argument("--workers", type=int, default=1,
                    help="gateway processes sharing the ports with SO_REUSEPORT (default 1)")
    gw.add_argument("--reuse-port", action="store_true", help=argparse.SUPPRESS)  # a worker
    gw.set_defaults(func=cmd_serve_gateway)
