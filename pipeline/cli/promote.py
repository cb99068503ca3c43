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


def register(sub) -> None:
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
