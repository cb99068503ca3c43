"""`tandem model`: what a model was built from (its build record), and what changed between two."""

from __future__ import annotations

import argparse

from tandem.pipeline.cli.flags import add_group


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


def register(sub) -> None:
    model_sub = add_group(sub, "model", "what a model was built from")
    inspect = model_sub.add_parser("inspect", help="print a model's build record")
    inspect.add_argument("path", help="SavedModel dir, version dir, or serving base dir")
    inspect.set_defaults(func=cmd_model_inspect)
    diff = model_sub.add_parser("diff", help="what changed between two models' build records")
    diff.add_argument("a")
    diff.add_argument("b")
    diff.set_defaults(func=cmd_model_diff)
