"""Feature sources: what changed between two snapshots of the tables the gateway decorates from,
before the new one decorates a single request (`tandem features diff`).

Per table, the entities added, removed and changed (same key, another value in some column);
per column, how many entities' values changed and how its distribution moved. The shift is
measured by the monitor's own code (components/monitor/drift.py: PSI, Wasserstein-1, KS or
chi-square, alerting by the same rule), given statistics built from the two tables' columns
in the form TFDV writes them, so a column the diff calls shifted is one the monitor would
alert on once the snapshot served.

Tables come as any object with `name`, `key`, `types` ({column: INT|FLOAT|BYTES}, key first),
`columns` and `rows` ({key: values}), as serving/snapshots.py reads them.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from tandem.components.monitor.drift import DriftConfig, compare_datasets
from tandem.schemas.exit_status import BadInputError

QUANTILES = 100  # equal-mass buckets of a numeric column's statistics (TFDV's default is 10)
RANKED = 1000  # values of a categorical column kept by rank; the rest pooled as "other"
EXAMPLES = 10  # keys listed per kind of entity change
BINS = 30  # bins of the histograms the page draws


class DiffError(BadInputError):
    """Snapshots that cannot be compared: the message names the table and column."""


def column_statistics(types: dict[str, str], columns: dict[str, list]):
    """One dataset's statistics proto for the given columns' values (None: missing)."""
    from tensorflow_metadata.proto.v0 import statistics_pb2

    n = max((len(v) for v in columns.values()), default=0)
    dataset = statistics_pb2.DatasetFeatureStatistics(num_examples=n)
    for name, values in columns.items():
        feature = dataset.features.add()
        feature.path.step.append(name)
        present = [v for v in values if v is not None]
        if types[name] in ("INT", "FLOAT"):
            feature.type = statistics_pb2.FeatureNameStatistics.INT if types[name] == "INT" \
                else statistics_pb2.FeatureNameStatistics.FLOAT
            stats = feature.num_stats
            _common(stats.common_stats, len(present), n)
            if present:
                x = np.asarray(present, dtype=np.float64)
                stats.mean, stats.std_dev = float(x.mean()), float(x.std())
                stats.min, stats.max = float(x.min()), float(x.max())
                points = np.quantile(x, np.linspace(0, 1, QUANTILES + 1))
                hist = stats.histograms.add(type=statistics_pb2.Histogram.QUANTILES)
                for lo, hi in zip(points[:-1], points[1:], strict=True):
                    hist.buckets.add(low_value=float(lo), high_value=float(hi),
                                     sample_count=len(present) / QUANTILES)
        else:
            feature.type = statistics_pb2.FeatureNameStatistics.STRING
            stats = feature.string_stats
            _common(stats.common_stats, len(present), n)
            labels, counts = np.unique(np.asarray([str(v) for v in present], dtype=object),
                                       return_counts=True) if present else ([], [])
            stats.unique = len(labels)
            order = sorted(zip(labels, counts, strict=True), key=lambda p: (-p[1], p[0]))
            for rank, (label, count) in enumerate(order[:RANKED]):
                stats.rank_histogram.buckets.add(low_rank=rank, high_rank=rank, label=label,
                                                 sample_count=float(count))
    return dataset


def _common(common, present: int, n: int) -> None:
    common.num_non_missing, common.num_missing = present, n - present
    common.min_num_values = common.max_num_values = 1 if present else 0


def _plot_data(kind: str, before: list, after: list) -> dict[str, Any]:
    """What the page draws of a column: numeric histograms on shared bins, or the top values'
    counts (the page is drawn from report.json alone)."""
    a = [v for v in before if v is not None]
    b = [v for v in after if v is not None]
    if kind in ("INT", "FLOAT"):
        both = np.asarray(a + b, dtype=np.float64)
        if not len(both):
            return {}
        lo, hi = float(both.min()), float(both.max())
        edges = np.linspace(lo, hi if hi > lo else lo + 1.0, BINS + 1)
        return {"edges": [round(float(e), 6) for e in edges],
                "from": np.histogram(a, bins=edges)[0].tolist(),
                "to": np.histogram(b, bins=edges)[0].tolist()}
    count_a: dict[str, int] = {}
    count_b: dict[str, int] = {}
    for values, counts in ((a, count_a), (b, count_b)):
        for v in values:
            counts[str(v)] = counts.get(str(v), 0) + 1
    top = sorted(set(count_a) | set(count_b),
                 key=lambda v: (-(count_a.get(v, 0) + count_b.get(v, 0)), v))[:20]
    return {"values": top, "from": [count_a.get(v, 0) for v in top],
            "to": [count_b.get(v, 0) for v in top], "n": [len(a), len(b)]}


def diff_table(before, after, config: DriftConfig) -> dict[str, Any]:
    """One table's entity and column changes between two snapshots."""
    if before.key != after.key or before.types[before.key] != after.types[after.key]:
        raise DiffError(f"table '{before.name}' is keyed by {before.key} "
                        f"({before.types[before.key]}) in one snapshot and by {after.key} "
                        f"({after.types[after.key]}) in the other: entities cannot be matched")
    columns = [c for c in before.columns if c in after.types]
    retyped = [c for c in columns if before.types[c] != after.types[c]]
    if retyped:
        c = retyped[0]
        raise DiffError(f"table '{before.name}' column '{c}' is {before.types[c]} in one "
                        f"snapshot and {after.types[c]} in the other")
    keys_a, keys_b = set(before.rows), set(after.rows)
    added, removed = sorted(keys_b - keys_a), sorted(keys_a - keys_b)
    common = sorted(keys_a & keys_b)
    pos_a = {c: i for i, c in enumerate(before.columns)}
    pos_b = {c: i for i, c in enumerate(after.columns)}
    changed_by_column = dict.fromkeys(columns, 0)
    changed_keys: list[str] = []
    for key in common:
        row_a, row_b = before.rows[key], after.rows[key]
        differs = False
        for c in columns:
            if row_a[pos_a[c]] != row_b[pos_b[c]]:
                changed_by_column[c] += 1
                differs = True
        if differs or len(before.columns) != len(after.columns):
            changed_keys.append(key)
    values_a = {c: [r[pos_a[c]] for r in before.rows.values()] for c in columns}
    values_b = {c: [r[pos_b[c]] for r in after.rows.values()] for c in columns}
    types = {c: before.types[c] for c in columns}
    shift = compare_datasets(column_statistics(types, values_a),
                             column_statistics(types, values_b), config)
    measured = shift.get("features", {})
    out_columns = {}
    for c in columns:
        m = measured.get(c, {})
        out_columns[c] = {
            "type": types[c], "changed": changed_by_column[c],
            "changed_share": round(changed_by_column[c] / len(common), 6) if common else 0.0,
            "psi": (m.get("psi") or {}).get("value"), "wasserstein": m.get("wasserstein"),
            "linf": m.get("linf"), "p_value": m.get("p_value"),
            "missing": m.get("missing"), "shifted": bool(m.get("alert")),
            "reasons": m.get("reasons", []),
            "plot": _plot_data(types[c], values_a[c], values_b[c])}
    return {
        "key": before.key,
        "entities": {"from": len(keys_a), "to": len(keys_b), "added": len(added),
                     "removed": len(removed), "changed": len(changed_keys),
                     "unchanged": len(common) - len(changed_keys)},
        "examples": {"added": added[:EXAMPLES], "removed": removed[:EXAMPLES],
                     "changed": changed_keys[:EXAMPLES]},
        "columns": out_columns,
        "columns_added": [c for c in after.columns if c not in before.types],
        "columns_removed": [c for c in before.columns if c not in after.types],
        "too_small": bool(shift.get("too_small")),
    }


def diff_snapshots(before: dict[str, Any], after: dict[str, Any], names: tuple[str, str],
                   config: DriftConfig | None = None) -> dict[str, Any]:
    """The diff report of two snapshots given as {table name: table}."""
    config = config or DriftConfig(min_examples=1)
    tables = {t: diff_table(before[t], after[t], config) for t in sorted(set(before) & set(after))}
    shifted = sorted(f"{t}.{c}" for t, d in tables.items()
                     for c, m in d["columns"].items() if m["shifted"])
    changed = any(d["entities"]["added"] or d["entities"]["removed"] or d["entities"]["changed"]
                  or d["columns_added"] or d["columns_removed"] for d in tables.values())
    return {"from": names[0], "to": names[1], "tables": tables,
            "tables_added": sorted(set(after) - set(before)),
            "tables_removed": sorted(set(before) - set(after)),
            "shifted": shifted,
            "identical": not changed and set(before) == set(after),
            "drift": {"alpha": config.alpha, "psi": config.default.psi, "bins": config.bins}}


def summary(report: dict[str, Any]) -> list[str]:
    """The terminal lines: one per table, one per changed column."""
    lines = [f"diff: {report['from']} -> {report['to']}"]
    for t in report["tables_added"]:
        lines.append(f"  table {t}: added")
    for t in report["tables_removed"]:
        lines.append(f"  table {t}: removed")
    for table, d in report["tables"].items():
        e = d["entities"]
        lines.append(f"  {table}: {e['from']:,} -> {e['to']:,} entities; {e['added']:,} added, "
                     f"{e['removed']:,} removed, {e['changed']:,} changed")
        for c, m in d["columns"].items():
            if not m["changed"] and not m["shifted"]:
                continue
            psi = "-" if m["psi"] is None else f"{m['psi']:.3f}"
            w = "" if m["wasserstein"] is None else f", Wasserstein {m['wasserstein']:.4g}"
            mark = "SHIFTED" if m["shifted"] else "changed"
            lines.append(f"    {c}: {m['changed']:,} value(s) changed ({m['changed_share']:.1%}),"
                         f" PSI {psi}{w}  {mark}")
        for c in d["columns_added"]:
            lines.append(f"    {c}: column added")
        for c in d["columns_removed"]:
            lines.append(f"    {c}: column removed")
    return lines
