"""`tandem logs`: the request log the gateway writes, read back as JSON lines or counts."""

from __future__ import annotations

import argparse
import sys

from tandem.pipeline.cli.errors import CommandError
from tandem.pipeline.cli.flags import add_group


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
            if args.with_examples:
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


def register(sub) -> None:
    logs_sub = add_group(sub, "logs", "read the request log")
    cat = logs_sub.add_parser("cat", help="one JSON line per logged request")
    cat.add_argument("path", help="a log directory, file or glob")
    cat.add_argument("--limit", type=int, default=None, help="stop after N records")
    cat.add_argument("--with-examples", action="store_true",
                     help="include the decorated examples")
    cat.add_argument("--full", action="store_true", help="include verdicts and sources")
    cat.set_defaults(func=cmd_logs_cat)
    st = logs_sub.add_parser("stats", help="counts over the logged requests")
    st.add_argument("path", help="a log directory, file or glob")
    st.add_argument("--json", action="store_true", help="print JSON")
    st.set_defaults(func=cmd_logs_stats)
