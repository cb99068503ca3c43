"""Statistics, anomalies and drift as HTML: one dataset, or two side by side (training vs
serving, a window vs the previous one), and the monitor's report over windows.

Pages draw what their callers measured: the drift measures and which features are
identifiers come in as arguments (pipeline/statistics_report.py and the monitor measure
them), so a page never judges data on its own.

One module past 400 lines because the monitor's page is the statistics page drawn per
window: both are built from the same feature sections, measure cells and drift text.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from tandem.reports import charts
from tandem.reports.html import Page, esc, fmt, status, table
from tandem.schemas.statistics import common_stats, feature_name

# Features drawn open in the page; the rest open on a click (a page of hundreds of features
# stays quick to load: a closed <details> is not laid out).
OPEN = 24


def _missing(feature, n: int) -> float | None:
    if not n:
        return None
    return 1.0 - common_stats(feature).num_non_missing / n


def _histogram(feature, kind: str):
    for h in feature.num_stats.histograms:
        if h.type == getattr(h, kind) and h.buckets:
            edges = np.array([h.buckets[0].low_value] + [b.high_value for b in h.buckets])
            counts = np.array([b.sample_count for b in h.buckets])
            return edges, counts
    return None


def _quantiles(feature) -> list[float] | None:
    q = _histogram(feature, "QUANTILES")
    if q is None:
        return None
    edges = q[0]
    return [float(np.interp(p, np.linspace(0, 1, len(edges)), edges))
            for p in (0, 0.25, 0.5, 0.75, 1)]


def _top(feature) -> tuple[list[str], list[float]]:
    s = feature.string_stats
    n = max(s.common_stats.num_non_missing, 1)
    if s.top_values:
        return [v.value for v in s.top_values], [v.frequency / n for v in s.top_values]
    buckets = s.rank_histogram.buckets
    return [b.label for b in buckets], [b.sample_count / n for b in buckets]


def _domain(schema, name: str):
    """(numeric range, string values) the schema allows for a feature, when it says."""
    if schema is None:
        return None, None
    feature = next((f for f in schema.feature if f.name == name), None)
    if feature is None:
        return None, None
    kind = feature.WhichOneof("domain_info")
    if kind == "int_domain" and (feature.int_domain.HasField("min")
                                 or feature.int_domain.HasField("max")):
        d = feature.int_domain
        return (d.min if d.HasField("min") else -np.inf,
                d.max if d.HasField("max") else np.inf), None
    if kind == "float_domain" and (feature.float_domain.HasField("min")
                                   or feature.float_domain.HasField("max")):
        d = feature.float_domain
        return (d.min if d.HasField("min") else -np.inf,
                d.max if d.HasField("max") else np.inf), None
    if kind == "string_domain":
        return None, list(feature.string_domain.value)
    if kind == "domain":
        domain = next((d for d in schema.string_domain if d.name == feature.domain), None)
        return (None, list(domain.value)) if domain is not None else (None, None)
    return None, None


def _measure_cells(m: dict | None, identifier: bool = False) -> list[str]:
    if identifier:
        return ['<span class="note">identifier: not compared</span>', "–", "–", "–"]
    if not m:
        return ["–", "–", "–", "–"]
    psi = m.get("psi", {})
    psi_text = "–" if psi.get("value") is None else \
        f"{fmt(psi['value'], 3)} [{fmt(psi['low'], 3)}, {fmt(psi['high'], 3)}]"
    other = m.get("wasserstein") if m.get("kind") == "numeric" else m.get("linf")
    miss = m.get("missing", {})
    miss_text = "–" if not miss else (
        f"{fmt(miss.get('ref'), 3)} → {fmt(miss.get('cur'), 3)}"
        + (f" (Δ [{fmt(miss['low'], 2)}, {fmt(miss['high'], 2)}])"
           if miss.get("change") and miss.get("low") is not None else ""))
    flag = status(not m.get("alert"), "ok", "ALERT")
    return [esc(psi_text), esc(fmt(other, 4)), esc(miss_text),
            f"{esc(fmt(m.get('q_value'), 3))} {flag}"]


def feature_sections(datasets: list[tuple[str, Any]], schema=None,
                     measures: dict[str, dict] | None = None,
                     anomalies: dict[str, str] | None = None,
                     identifiers: Mapping[str, str] | None = None) -> str:
    """The per-feature summary table and one block per feature, for one dataset or two
    (`datasets` = [(label, DatasetFeatureStatistics), ...]); `identifiers` (name: why) are
    described, not compared. The features' charts are drawn together (charts.draw_together):
    a wide dataset's hundreds of them on every core."""
    return charts.draw_together(lambda: _feature_sections(datasets, schema, measures, anomalies,
                                                          identifiers))


def _feature_sections(datasets, schema, measures, anomalies, identifiers) -> str:
    measures = measures or {}
    anomalies = anomalies or {}
    identifiers = identifiers or {}
    by_name = [{feature_name(f): f for f in d.features} for _, d in datasets]
    names = sorted(set().union(*[set(b) for b in by_name]))
    flagged = {n for n in names if n in anomalies or measures.get(n, {}).get("alert")}
    rows = []
    for name in names:
        cells = [f'<a href="#f-{esc(name)}">{esc(name)}</a>']
        kind = "identifier" if name in identifiers else "numeric" if any(
            b.get(name) is not None and b[name].HasField("num_stats") for b in by_name) \
            else "categorical"
        cells.append(kind)
        for (_, d), b in zip(datasets, by_name, strict=True):
            f = b.get(name)
            cells.append(esc(fmt(_missing(f, d.num_examples), 3)) if f is not None else "absent")
        if len(datasets) == 2:
            cells += _measure_cells(measures.get(name), name in identifiers)
        cells.append(esc(anomalies.get(name, "")))
        rows.append(cells)
    header = ["feature", "type"] + [f"missing ({label})" for label, _ in datasets]
    if len(datasets) == 2:
        header += ["PSI [95%]", "Wasserstein / L∞", "missing share", "q-value"]
    header.append("anomaly")
    out = ['<input id="filter" type="search" placeholder="filter features by name">',
           f'<p class="note">{len(names)} features; {len(flagged)} flagged. Each block opens '
           "on a click; flagged features and the first ones are open.</p>",
           table(header, rows, raw=True)]
    for i, name in enumerate(sorted(names, key=lambda n: (n not in flagged, n))):
        present = [(label, d, b.get(name)) for (label, d), b in zip(datasets, by_name,
                                                                     strict=True)]
        body = _feature_body(name, present, schema, measures.get(name), identifiers.get(name))
        is_open = " open" if (name in flagged or i < OPEN) else ""
        cls = "feature flagged" if name in flagged else "feature"
        note = f" — {esc(anomalies[name])}" if name in anomalies else ""
        out.append(f'<details class="{cls}" id="f-{esc(name)}" data-feature="{esc(name)}"'
                   f'{is_open}><summary>{esc(name)}{note}</summary>{body}</details>')
    return "".join(out)


def _identifier_body(present: list, why: str) -> str:
    """An identifier described: how many examples carry one, how many values are unique, and
    how often the most repeated one occurs (a duplicated id shows here)."""
    rows = []
    for label, d, f in present:
        if f is None:
            rows.append([label, "absent", "–", "–", "–", "–"])
            continue
        carried = int(common_stats(f).num_non_missing)
        s = f.string_stats if f.HasField("string_stats") else None
        unique = int(s.unique) if s is not None else None
        top = max((v.frequency for v in s.top_values), default=None) if s is not None else None
        rows.append([label, f"{carried:,} of {d.num_examples:,}",
                     unique if unique is not None else "–",
                     f"{unique / carried:.1%}" if unique is not None and carried else "–",
                     int(top) if top is not None else "–",
                     float(s.avg_length) if s is not None else "–"])
    return (f'<p class="note">identifier ({esc(why)}): described, never compared for drift '
            "or skew, since its values are new in every dataset by design</p>"
            + table(["dataset", "examples with a value", "unique", "unique share",
                     "most repeated value occurs", "avg length"], rows))


def _feature_body(name: str, present: list, schema, measure: dict | None,
                  identifier: str | None = None) -> str:
    if identifier is not None:
        return _identifier_body(present, identifier)
    numeric_range, values = _domain(schema, name)
    parts = []
    numeric = [(label, f) for label, _, f in present
               if f is not None and f.HasField("num_stats")]
    strings = [(label, f) for label, _, f in present
               if f is not None and f.HasField("string_stats")]
    if numeric:
        series = []
        for label, f in numeric:
            h = _histogram(f, "STANDARD")
            if h is not None:
                series.append((label, h[0], h[1]))
        shade = None
        if numeric_range is not None:
            lo = min(float(s[1][0]) for s in series) if series else 0.0
            hi = max(float(s[1][-1]) for s in series) if series else 1.0
            shade = (max(numeric_range[0], lo - (hi - lo)), min(numeric_range[1],
                                                                hi + (hi - lo)))
        if series:
            parts.append(charts.figure(charts.histogram(series, title=name, shade=shade)))
        rows = []
        for label, f in numeric:
            s = f.num_stats
            q = _quantiles(f) or [None] * 5
            rows.append([label, s.mean, s.std_dev, s.num_zeros, *q])
        parts.append(table(["dataset", "mean", "std", "zeros", "min", "p25", "p50", "p75",
                            "max"], rows))
        if numeric_range is not None:
            parts.append(f'<p class="note">schema domain: [{esc(fmt(numeric_range[0]))}, '
                         f"{esc(fmt(numeric_range[1]))}]</p>")
    elif strings:
        series = [(label, *_top(f)) for label, f in strings]
        parts.append(charts.figure(charts.top_values(series, title=name, domain=values)))
        rows = [[label, f.string_stats.unique, f.string_stats.avg_length]
                for label, f in strings]
        parts.append(table(["dataset", "unique", "avg length"], rows))
        if values is not None:
            parts.append(f'<p class="note">schema domain: {len(values)} values; values outside '
                         "it are hatched</p>")
    else:
        parts.append('<p class="note">no values</p>')
    if measure:
        detail = [f"n = {measure['n'][0]:,} vs {measure['n'][1]:,}",
                  f"p = {fmt(measure.get('p_value'), 3)}, q = {fmt(measure.get('q_value'), 3)}"]
        if measure.get("ks") is not None:
            detail.append(f"KS {fmt(measure['ks'], 3)}")
        if measure.get("new_values"):
            detail.append("new values: " + ", ".join(measure["new_values"]))
        if measure.get("reasons"):
            detail.append("reached: " + "; ".join(measure["reasons"]))
        parts.append(f'<p class="note">{esc(" · ".join(detail))}</p>')
    return "".join(parts)


def anomalies_table(anomalies) -> str:
    """An Anomalies proto as a table (feature, severity, short and long description)."""
    rows = []
    for name, info in sorted(anomalies.anomaly_info.items()):
        rows.append([name, type(info).Severity.Name(info.severity), info.short_description,
                     info.description])
    if anomalies.HasField("dataset_anomaly_info"):
        info = anomalies.dataset_anomaly_info
        rows.append(["(dataset)", type(info).Severity.Name(info.severity),
                     info.short_description, info.description])
    if not rows:
        return '<p><span class="pass">No anomalies</span> against the schema.</p>'
    return table(["feature", "severity", "anomaly", "description"], rows)


def _drift_text(drift: dict, identifiers: Mapping[str, str]) -> str:
    """What was compared, against which thresholds, and what changed."""
    if drift.get("too_small"):
        text = (f"<p>{status(None)} not compared: fewer than {drift['min_examples']:,} "
                "examples on one side.</p>")
    else:
        alerts = drift.get("alerts", [])
        t = drift.get("thresholds", {})
        reached = [f"PSI ≥ {t['psi']:g}" if t.get("psi") is not None else "",
                   f"a {t['missing'] * 100:g}-point change in missing share"
                   if t.get("missing") is not None else "",
                   f"Wasserstein ≥ {t['wasserstein']:g}"
                   if t.get("wasserstein") is not None else "",
                   f"L∞ ≥ {t['linf']:g}" if t.get("linf") is not None else ""]
        text = (f"<p>{len(alerts)} feature(s) changed beyond the thresholds "
                f"({' or '.join(r for r in reached if r) or 'none set'}, with the "
                f"false-discovery rate across features held at {drift['alpha']:.0%} by "
                f"Benjamini-Hochberg){': ' + esc(', '.join(alerts)) if alerts else ''}.</p>")
    if identifiers:
        text += ('<p class="note">Identifiers, described and never compared (their values are '
                 "new in every dataset by design): "
                 + esc(", ".join(f"{n} ({why})" for n, why in sorted(identifiers.items())))
                 + ".</p>")
    return text


def stats_report(stats, compare=None, schema=None, anomalies=None, names=("data", "other"),
                 title: str = "tandem statistics", drift: dict | None = None,
                 identifiers: Mapping[str, str] | None = None) -> Page:
    """One statistics file (first dataset), or two side by side. `drift` is what
    tandem.components.monitor.drift.compare_datasets measured between them (no Drift section
    without it); `identifiers` (name: why) are described, never compared."""
    identifiers = identifiers or {}
    datasets = [(names[0], stats.datasets[0])]
    if compare is not None:
        datasets.append((names[1], compare.datasets[0]))
    meta = [f"{label}: {d.num_examples:,} examples" for label, d in datasets]
    page = Page(title, meta=meta)
    if drift is not None:
        page.section("Drift", _drift_text(drift, identifiers))
    anomaly_names = {}
    if anomalies is not None:
        page.section("Anomalies", anomalies_table(anomalies))
        anomaly_names = {n: i.short_description for n, i in anomalies.anomaly_info.items()}
    page.section("Features", feature_sections(
        datasets, schema, (drift or {}).get("features"), anomaly_names, identifiers))
    return page


def _answers_and_label(summary: dict) -> str:
    """The verdict's words on the model's answers and the joined label."""
    text = ""
    answers = summary.get("prediction_drift")
    if answers:
        drifted = answers["features"]
        text += (f"; prediction drift in {esc(', '.join(drifted) or 'no answer')} (the "
                 f"model's {esc(', '.join(answers['columns']))}, "
                 f"{answers['answered_examples']:,} answers)")
    label = summary.get("label_drift")
    if label:
        where = [f"drift in {', '.join(label['drift'])}" if label["drift"] else "",
                 f"skew in {', '.join(label['skew'])}" if label["skew"] else ""]
        text += (f"; label {esc(label['label'])} ({esc(label['kind'])}, "
                 f"{label['labelled_examples']:,} joined): "
                 + esc("; ".join(w for w in where if w) or "no drift or skew"))
    return text


def monitor_report(summary: dict, stats, train, schema) -> Page:
    """The monitor's page: every window's verdicts, PSI over time for features that alerted,
    and the latest judged window against training (or the previous window)."""
    windows = summary["windows"]
    drift, skew = summary["drift_features"], summary["skew_features"]
    answers = summary.get("prediction_drift_features") or []
    found = bool(drift or skew or answers)
    page = Page("tandem monitor: " + ("DRIFT/SKEW FOUND" if found else "no drift or skew"),
                meta=[f"logs: {summary['logs']}", f"config: {summary['config']}",
                      f"model: {summary['model']['name']} v{summary['model']['version']}",
                      f"training statistics: {summary['training_statistics'] or 'none found'}"])
    i = summary["input"]
    page.section("Verdict", (
        f"<p>{status(not found, 'no drift or skew', 'FOUND')}: drift in "
        f"{esc(', '.join(drift) or 'no feature')}; skew in {esc(', '.join(skew) or 'no feature')}"
        f"{_answers_and_label(summary)}. {i['records']:,} records from {i['files']} file(s) "
        f"({i['torn']} torn, {i['corrupt']} corrupt, {i['unreadable']} unreadable skipped). A feature alerts when "
        "its effect size reaches its threshold and its test survives "
        f"{esc(summary['fdr']['method'])} control of the false-discovery rate across features "
        f"at {summary['fdr']['alpha']:g}; windows under the minimum size are not judged.</p>"
        + ('<p class="note">Identifiers, never judged: ' + esc(", ".join(
            f"{n} ({why})" for n, why in sorted(summary["identifiers"].items()))) + ".</p>"
           if summary.get("identifiers") else "")))
    rows = []
    for w in windows:
        rows.append([esc(w["window"]), w["records"], w["examples"],
                     status(None) if w["too_small"] else "judged",
                     esc(", ".join(w.get("drift", {}).get("alerts", [])) or "–"),
                     esc(", ".join(w.get("skew", {}).get("alerts", [])) or "–"),
                     esc(", ".join(w.get("prediction_drift", {}).get("alerts", [])) or "–"),
                     esc(", ".join(sorted(w["schema_anomalies"])) or "–"),
                     esc(", ".join(sorted(w.get("sources") or {})) or "–")])
    page.section("Windows", table(["window", "requests", "examples", "size", "drift", "skew",
                                   "prediction drift", "schema anomalies", "decorated from"],
                                  rows, raw=True))
    traced = summary.get("source_attribution") or []
    if traced:
        page.section("Drift traced to a feature source", "<p>Windows whose examples were "
                     "decorated from another feature-source snapshot than the earlier windows', "
                     "and drifted:</p>", table(
                         ["window", "feature", "PSI", "decorated from", "share of the window",
                          "earlier windows"],
                         [[a["window"], a["feature"], a["psi"], a["source"], f"{a['share']:.0%}",
                           ", ".join(a["earlier"]) or "–"] for a in traced]))
    alerting = sorted(set(drift) | set(skew))[:6]
    figures = []
    labels = [w["window"] for w in windows]
    for kind, names in (("drift", [n for n in alerting if n in drift]),
                        ("skew", [n for n in alerting if n in skew]),
                        ("prediction_drift", answers[:6])):
        if names:
            series = [(n, [w.get(kind, {}).get("features", {}).get(n, {}).get("psi", {})
                           .get("value") for w in windows]) for n in names]
            figures.append(charts.figure(charts.lines(
                labels, series, title=f"PSI ({kind.replace('_', ' ')})", ylabel="PSI")))
    if figures:
        page.section("Over time", "".join(figures))
    alert_rows = []
    for w in windows:
        for kind in ("drift", "skew", "prediction_drift"):
            for name in w.get(kind, {}).get("alerts", []):
                m = w[kind]["features"][name]
                alert_rows.append([esc(w["window"]), kind.replace("_", " "), esc(name),
                                   *_measure_cells(m),
                                   f"{m['n'][0]:,} / {m['n'][1]:,}",
                                   esc("; ".join(m["reasons"]))])
    if alert_rows:
        page.section("Alerts", table(["window", "kind", "feature", "PSI [95%]",
                                      "Wasserstein / L∞", "missing share", "q-value",
                                      "n (reference / window)", "reached"], alert_rows, raw=True))
    fvs = summary.get("feature_value_skew")
    if fvs:
        rows = [[esc(r["feature"]), r["joined"], r["mismatched"], r["mismatch_rate"],
                 status(r["feature"] not in fvs["skewed"], "ok", "SKEW")]
                for r in fvs["features"]]
        page.section("Feature-value skew (joined by id)",
                     "<p>Logged examples joined with the training examples by id (TFDV's "
                     "DetectFeatureSkew): the same request should carry the same values.</p>",
                     table(["feature", "joined pairs", "values differ", "rate", "verdict"],
                           rows, raw=True))
    judged = [w for w in windows if not w["too_small"]]
    if judged:
        last = judged[-1]
        datasets = {d.name: d for d in stats.datasets}
        current = datasets.get(last["window"])
        if train is not None and current is not None:
            page.section(f"Window {last['window']} against training", feature_sections(
                [("training", train), ("serving", current)], schema,
                last.get("skew", {}).get("features"), last["schema_anomalies"],
                summary.get("identifiers")))
        elif current is not None:
            page.section(f"Window {last['window']}", feature_sections(
                [("serving", current)], schema, None, last["schema_anomalies"],
                summary.get("identifiers")))
    return page


def monitor_html(summary: dict, stats, train, schema) -> str:
    """The monitor's page as HTML: what the monitor job (components/monitor/job.py) is given
    to draw report.html with."""
    return monitor_report(summary, stats, train, schema).render()
