"""The checks a feature-source snapshot passes before the gateway decorates from it, as the CLI
runs them: the diff (what changed in the tables) and the replay (what the change does to the
logged traffic's predictions). serving/ reads the snapshots, components/ measures, reports/
draws; this module is where the three meet, so none of them imports another."""

from __future__ import annotations

import json
import os
from typing import Any

DIFF_JSON, DIFF_HTML = "diff.json", "diff.html"


def run_features_diff(source_from: str, source_to: str, out_dir: str | None = None,
                      tables: list[str] | None = None) -> dict[str, Any]:
    """Diff two snapshots (SQLite files or Redis addresses); writes diff.json and diff.html to
    `out_dir` when given. `tables`: only these (each must be in both snapshots)."""
    from tandem.components.source_diff import diff_snapshots
    from tandem.reports.source_diff import render_text
    from tandem.serving.gateway.sources import SourceError
    from tandem.serving.snapshots import open_snapshot, read_table, snapshot_name, table_names

    sources = [open_snapshot(source_from), open_snapshot(source_to)]
    try:
        read = []
        for source in sources:
            names = table_names(source)
            wanted = tables if tables is not None else names
            for table in wanted:
                if table not in names:
                    raise SourceError(f"feature source {snapshot_name(source)} has no table "
                                      f"'{table}' (it has {', '.join(names) or 'none'})")
            read.append({t: read_table(source, t) for t in wanted})
        report = diff_snapshots(read[0], read[1], tuple(snapshot_name(s) for s in sources))
    finally:
        for source in sources:
            source.close()
    report["sources"] = {"from": source_from, "to": source_to}
    if out_dir:
        os.makedirs(out_dir, exist_ok=True)
        with open(os.path.join(out_dir, DIFF_JSON), "w") as f:
            f.write(json.dumps(report, indent=2, sort_keys=True) + "\n")
        with open(os.path.join(out_dir, DIFF_HTML), "w", encoding="utf-8") as f:
            f.write(render_text(report))
    return report


def redecoration_spec(gateway_config: str, candidate_features: str):
    """The gateway config's joins and defaults with the candidate snapshot, checked: every
    joined table and column is in the candidate, with the serving snapshot's types."""
    from tandem.schemas import load_schema
    from tandem.serving.gateway.config import GatewayConfigError, load_config
    from tandem.serving.gateway.gateway import schema_defaults
    from tandem.serving.redecorate import RedecorationSpec
    from tandem.serving.snapshots import check_candidate, open_snapshot, snapshot_name

    config = load_config(gateway_config)
    joins = config.join_list()
    if not joins:
        raise GatewayConfigError(f"gateway config {gateway_config} joins no feature source "
                                 "(decorate.joins is empty): there is nothing to re-decorate")
    serving_spec = config.decorate.redis or config.decorate.sqlite
    serving, candidate = open_snapshot(serving_spec), open_snapshot(candidate_features)
    try:
        check_candidate(candidate, serving, joins)
        names = {"serving": snapshot_name(serving), "candidate": snapshot_name(candidate)}
    finally:
        serving.close()
        candidate.close()
    columns = [c for j in joins for c in j.columns]
    defaults = {**schema_defaults(load_schema(config.schema), columns),
                **config.decorate.defaults}
    spec = RedecorationSpec(tuple((j.key, j.table, j.columns) for j in joins),
                            candidate_features, serving_spec, defaults)
    return spec, names


def run_features_replay(logs: str, baseline: str, candidate: str, out_dir: str,
                        gateway_config: str, candidate_features: str, config=None,
                        **kwargs) -> dict:
    """components/shadow/features_replay.py's replay, re-decorating with serving/'s Decorator
    and drawing report.html with reports/'s renderer."""
    from tandem.components.shadow import features_replay
    from tandem.reports.replay import render_text
    from tandem.serving.redecorate import open_redecorator

    spec, names = redecoration_spec(gateway_config, candidate_features)
    return features_replay.run_features_replay(logs, baseline, candidate, out_dir,
                                               open_redecorator, spec, names, config,
                                               render=render_text, **kwargs)


def redecoration(gateway_config: str, candidate_features: str) -> tuple[Any, Any, dict]:
    """What SourceValidator's executor re-decorates with (by dotted name: components/ does
    not import serving/): (the redecorator factory, its spec, the snapshots' names)."""
    from tandem.serving.redecorate import open_redecorator

    spec, names = redecoration_spec(gateway_config, candidate_features)
    return open_redecorator, spec, names


PREPARE = f"{redecoration.__module__}.{redecoration.__qualname__}"
