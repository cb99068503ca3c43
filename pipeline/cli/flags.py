"""The flags several command groups share, each spelled and explained in one place, so that a
flag name means the same thing in every command that takes it; and the one shape of a group
(a noun whose verbs are subcommands)."""

from __future__ import annotations

import argparse


def add_group(sub, name: str, help: str, metavar: str = "ACTION"):
    """A command group, `tandem NAME VERB ...`: its parser on `sub`, and the subparsers its
    verbs are added to (one is required)."""
    group = sub.add_parser(name, help=help)
    return group.add_subparsers(dest=f"{name}_command", required=True, metavar=metavar)


def add_config(parser: argparse.ArgumentParser, required: bool = True,
               help: str = "pipeline config YAML (or a name)") -> None:
    """--config: always a pipeline config, by path or by the name of a shipped one."""
    parser.add_argument("--config", required=required, default=None, help=help)


def add_set(parser: argparse.ArgumentParser, help: str = "override a config key") -> None:
    """--set KEY=VALUE, repeatable: overrides a key of the YAML config the command reads."""
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help=help)


def add_beam_args(parser: argparse.ArgumentParser, default: str = "default: DirectRunner in "
                  "process") -> None:
    """Everything after `--`, handed to Beam as pipeline args."""
    parser.add_argument("beam_args", nargs="*", help=f"after --: Beam pipeline args ({default})")


def add_replay_config(parser: argparse.ArgumentParser) -> None:
    """--replay-config: the shadow replay's YAML (thresholds, slices), never a pipeline config."""
    parser.add_argument("--replay-config", default=None, metavar="FILE",
                        help="replay YAML: thresholds, slices, top_n, batch_size")
