"""`tandem explain`: one example through an exported model, raw -> transformed -> score."""

from __future__ import annotations

import argparse
import os


def cmd_explain(args: argparse.Namespace) -> int:
    import json as jsonlib

    from tandem.components.explain import explain, format_explain, read_example

    path = args.model_dir
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


def register(sub) -> None:
    ex = sub.add_parser("explain", help="one example through a model, and what moves its score")
    ex.add_argument("--model-dir", required=True, metavar="DIR",
                    help="a SavedModel (a pushed version), a serving base directory (its "
                         "newest version) or a Trainer model artifact")
    ex.add_argument("--example", required=True, metavar="FILE",
                    help="a TFRecord file of tf.Examples (GZIP or not), or a text tf.Example "
                         "(.pbtxt)")
    ex.add_argument("--index", type=int, default=0, help="which record of FILE (default 0)")
    ex.add_argument("--json", action="store_true", help="print JSON")
    ex.set_defaults(func=cmd_explain)
