"""The `tandem` command line: the parser assembled from one module per command group, listed in
the order data flows through tandem, and the one place an error becomes an exit status."""

from __future__ import annotations

import argparse
import os
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")  # before TensorFlow is imported

from tandem.pipeline.cli import (  # noqa: E402
    compile,
    data,
    explain,
    features,
    logs,
    loop,
    model,
    monitor,
    promote,
    report,
    run,
    schema,
    score,
    serve,
    shadow,
    traffic,
)
from tandem.schemas import exit_status  # noqa: E402

# The command groups in the order data flows: from data to a served model, its traffic and
# its checks, a candidate's promotion, then the tools that look back at a run, and the whole
# loop last. `tandem --help` lists them in this order.
GROUPS = (data, schema, run, serve, features, traffic, logs, monitor, shadow, promote, score,
          explain, model, compile, report, loop)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="tandem", description="tandem: a TFX-native production ML pipeline.",
        epilog="exit status: 0 done; 1 a check failed (anomalies, not blessed); 2 bad input or "
               "config; 3 an unexpected failure (--verbose shows the trace); 130 interrupted",
    )
    parser.add_argument("--verbose", action="store_true",
                        help="show library logs and, on failure, the full trace")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for group in GROUPS:
        group.register(sub)
    _settle_every_subcommand(parser)
    return parser


def _subcommands(parser: argparse.ArgumentParser):
    """Every parser below `parser`, depth first."""
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for child in action.choices.values():
                yield child
                yield from _subcommands(child)


def _settle_every_subcommand(parser: argparse.ArgumentParser) -> None:
    """What holds after any subcommand: `--verbose` is accepted there too (`tandem run ...
    --verbose`), and a flag is taken only by its full name, so a shortened or retired
    spelling (`explain --model` for `--model-dir`) is refused instead of guessed."""
    parser.allow_abbrev = False
    for child in _subcommands(parser):
        child.allow_abbrev = False
        if not any("--verbose" in a.option_strings for a in child._actions):
            # SUPPRESS: an unset flag must not override `tandem --verbose run ...`.
            child.add_argument("--verbose", action="store_true", default=argparse.SUPPRESS,
                               help="show library logs and, on failure, the full trace")


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


# Mode flags that became subcommands: named with their new spelling when someone types them.
RETIRED = {("compile", "--monitoring"): "tandem compile monitoring",
           ("compile", "--promotion"): "tandem compile promotion",
           ("monitor", "--pipeline"): "tandem monitor pipeline"}


def _refuse_retired(parser: argparse.ArgumentParser, argv: list[str]) -> None:
    words = [a for a in argv if a != "--verbose"]
    for (group, flag), now in RETIRED.items():
        if words[:1] == [group] and flag in words:
            parser.error(f"`{group} {flag}` is now a subcommand: use `{now}`")


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    _refuse_retired(parser, sys.argv[1:] if argv is None else argv)
    args = parser.parse_args(argv)
    verbose = getattr(args, "verbose", False)
    _quiet_libraries(verbose)
    from tandem.pipeline.quiet import guard_tensorflow_teardown

    guard_tensorflow_teardown()
    noise_filter = None
    # Beam workers write the teardown noise; only the commands that run Beam need the filter.
    if not verbose and getattr(args, "runs_beam", False):
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
