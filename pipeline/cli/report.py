"""`tandem report`: self-contained HTML pages of what the pipeline measured."""

from __future__ import annotations

import argparse
import os

from tandem.pipeline.cli.errors import CommandError
from tandem.pipeline.cli.flags import add_group


def cmd_report_stats(args: argparse.Namespace) -> int:
    from tandem.components.monitor.job import load_statistics
    from tandem.pipeline.statistics_report import statistics_page

    stats = load_statistics(args.path)
    compare = load_statistics(args.compare) if args.compare else None
    schema = anomalies = None
    if args.schema:
        import tensorflow_data_validation as tfdv

        try:
            schema = tfdv.load_schema_text(args.schema)
        except Exception as e:  # noqa: BLE001 - any parse failure is bad input
            raise CommandError(f"{args.schema} is not a schema in text format: "
                               f"{str(e).splitlines()[0][:200]}") from None
        anomalies = tfdv.validate_statistics(stats, schema)
    names = (os.path.basename(os.path.normpath(args.path)) or "data",
             os.path.basename(os.path.normpath(args.compare or "")) or "other")
    if names[0] == names[1]:
        names = ("data", "compare")
    page = statistics_page(stats, compare, schema, anomalies, names=names,
                           title="tandem statistics" + (" comparison" if compare else ""))
    page.write(args.out)
    print(f"wrote {args.out}")
    return 0


def register(sub) -> None:
    report_sub = add_group(sub, "report", "self-contained HTML reports", metavar="KIND")
    rs = report_sub.add_parser("stats", help="render TFDV statistics (one file or two)")
    rs.add_argument("path", help="statistics: a StatisticsGen artifact dir, FeatureStats.pb, "
                                 "text format or TFRecord")
    rs.add_argument("--compare", default=None, metavar="PATH",
                    help="a second statistics file, drawn side by side with drift measures")
    rs.add_argument("--schema", default=None, help="schema (text): domains and anomalies")
    rs.add_argument("--out", required=True, metavar="FILE.html",
                    help="the page to write (a file, not a directory)")
    rs.set_defaults(func=cmd_report_stats, runs_beam=True)
