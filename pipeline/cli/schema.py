"""`tandem schema`: the contract the data is validated against, proposed from the data and
diffed against the curated one."""

from __future__ import annotations

import argparse
import os

from tandem.pipeline.cli.errors import CommandError
from tandem.pipeline.cli.flags import add_config, add_group, add_set


def cmd_schema_propose(args: argparse.Namespace) -> int:
    from tandem.components.features import default_skip
    from tandem.components.statistics import compute_statistics
    from tandem.pipeline.beam import beam_pipeline_args
    from tandem.pipeline.config import load_config
    from tandem.pipeline.preflight import check_data
    from tandem.schemas import SchemaError, load_schema, write_schema
    from tandem.schemas.propose import diff_schemas, numbers_with_markers, propose_schema

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
    skipped = {f.name: why for f in schema.feature if f.name != config.label
               and (why := default_skip(f))
               and getattr(config.features.get(f.name), "kind", None) is None}
    ids = [f"{name} ({why})" for name, why in skipped.items() if why == "an identifier"]
    stages = [f"{name} ({why})" for name, why in skipped.items() if why != "an identifier"]
    if ids:
        print(f"not model inputs unless the config's features name a kind: {', '.join(ids)}")
    if stages:
        print(f"not model inputs: {', '.join(stages)}; a column with no values in the data is "
              "disabled, set its lifecycle_stage in the schema once it has some")
    for name, markers in numbers_with_markers(schema, stats.datasets).items():
        if name != config.label:
            print(f"note: {name} holds numbers but for {', '.join(map(repr, markers))}, so it "
                  "is read as text (categories); write its missing cells empty to have it "
                  "read as a number")
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


def register(sub) -> None:
    schema_sub = add_group(sub, "schema", "propose a schema and diff it against the curated one")
    propose = schema_sub.add_parser(
        "propose", help="infer a schema from the data and diff it against the curated one"
    )
    add_config(propose)
    propose.add_argument("--out", required=True, metavar="FILE",
                         help="the schema file to write (a file, not a directory; may be the "
                              "curated schema itself)")
    add_set(propose, help="override a config key, e.g. data.location=/tmp/d")
    propose.set_defaults(func=cmd_schema_propose, runs_beam=True)
