"""`tandem promote` and `tandem rollback`: which version a label (canary, stable) points at,
moved safely on one server or on every replica polling the model config file."""

from __future__ import annotations

import argparse

from tandem.pipeline.cli.errors import CommandError


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


def _move_label(args: argparse.Namespace, move) -> int:
    """Run one label move (`move` returns its steps) and print each step."""

    _check_replica_flags(args)
    for step in move():
        print(step)
    return 0


def cmd_promote(args: argparse.Namespace) -> int:
    from tandem.serving.promotion import promote, promote_replicas

    if args.replicas:
        return _move_label(args, lambda: promote_replicas(
            args.model_config_file, _replicas(args.replicas), args.model, args.model_version,
            args.label, timeout=args.timeout, apply=args.apply))
    return _move_label(args, lambda: promote(
        args.model_config_file, args.server, args.model, args.model_version, args.label))


def cmd_rollback(args: argparse.Namespace) -> int:
    from tandem.serving.promotion import rollback

    return _move_label(args, lambda: rollback(
        args.model_config_file, args.server, args.model, args.model_version,
        replicas=_replicas(args.replicas), timeout=args.timeout, apply=args.apply,
        label=args.label))


def _add_where_flags(parser: argparse.ArgumentParser) -> None:
    """Where a label moves: one server through its reload RPC, or every replica polling the
    model config file."""
    parser.add_argument("--model", required=True, help="model name")
    parser.add_argument("--model_config_file", default="deploy/models.config", metavar="FILE",
                        help="TF Serving's models.config, as the servers read it (rewritten "
                             "atomically; default deploy/models.config)")
    parser.add_argument("--server", default="127.0.0.1:8500",
                        help="one server's gRPC address: steps go through its reload RPC")
    parser.add_argument("--replicas", default=None, metavar="HOST:PORT,...",
                        help="servers that poll --model_config_file: each step is written to "
                             "the file and waits until every replica shows it (instead of "
                             "--server)")
    parser.add_argument("--apply", default=None, metavar="COMMAND",
                        help="with --replicas: a shell command run after each step is written "
                             "({} is the config file), e.g. one that updates the ConfigMap")
    parser.add_argument("--timeout", type=float, default=300.0,
                        help="seconds to wait for the replicas at each step (default 300)")


def register(sub) -> None:
    promote = sub.add_parser("promote", help="point a label at a version, safely")
    _add_where_flags(promote)
    promote.add_argument("--model-version", type=int, required=True, metavar="N",
                         help="the version the label will point at")
    promote.add_argument("--label", choices=("canary", "stable"), required=True)
    promote.set_defaults(func=cmd_promote)

    rollback = sub.add_parser("rollback", help="point stable (or canary) back at a good version")
    _add_where_flags(rollback)
    rollback.add_argument("--model-version", type=int, default=None, metavar="N",
                          help="the version to roll back to (default: the previous stable; "
                               "with --label canary: the stable version)")
    rollback.add_argument("--label", choices=("canary", "stable"), default="stable",
                          help="stable (default): back to the previous good version; canary: "
                               "a rejected candidate's label back to stable's version")
    rollback.set_defaults(func=cmd_rollback)
