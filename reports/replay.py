"""The shadow replay report as HTML: the gate's verdict, parity, how B differs from A
overall and per slice (with intervals), a multi-class model's flip matrix, quality on
labelled traffic, and the most divergent requests."""

from __future__ import annotations

from typing import Any

import numpy as np

from tandem.reports import charts
from tandem.reports.feature_replay import features_section
from tandem.reports.html import Page, esc, fmt, status, table
from tandem.schemas.contracts import LOWER_IS_BETTER


def _ci(m: dict | None) -> str:
    if not m or m.get("value") is None:
        return "–"
    return f"{fmt(m['value'])} [{fmt(m['low'])}, {fmt(m['high'])}]"


def _metric_rows(block: dict) -> list[list[Any]]:
    rows = []
    for name in ("agreement", "symmetric_flip_rate", "pos_to_neg_flip_rate",
                 "neg_to_pos_flip_rate"):
        if name in block:
            rows.append([name, _ci(block[name]), block[name]["n"]])
    for q in ("mean", "p50", "p90", "p99"):
        rows.append([f"|Δ| {q}", _ci(block["abs_delta"][q]), block["abs_delta"][q]["n"]])
    for q, m in block.get("relative_delta", {}).items():
        rows.append([f"relative |Δ| {q}", _ci(m), m["n"]])
    rows.append(["|Δ| max", fmt(block["abs_delta"]["max"]), block["abs_delta"]["mean"]["n"]])
    return rows


def _flip_matrix(matrix: dict) -> str:
    """A's class (rows) against B's (columns) as a table whose cells are shaded by their share
    of the row: blue where B agrees, red where it moved A's requests."""
    names, counts = matrix["classes"], np.asarray(matrix["counts"])
    totals = counts.sum(axis=1)
    out = ["<table><thead><tr><th>A \\ B</th>"]
    out += [f"<th>{esc(c)}</th>" for c in names]
    out.append("<th>A's n</th><th>flipped</th></tr></thead><tbody>")
    for i, name in enumerate(names):
        out.append(f"<tr><th>{esc(name)}</th>")
        for j, other in enumerate(names):
            share = counts[i, j] / totals[i] if totals[i] else 0.0
            rgb = "9,105,218" if i == j else "207,34,46"
            out.append(f'<td class="num" style="background: rgba({rgb},{0.6 * share:.3f})" '
                       f'title="A {esc(name)}, B {esc(other)}: {share:.1%} of A\'s {esc(name)}">'
                       f"{counts[i, j]:,}</td>")
        flipped = 1.0 - counts[i, i] / totals[i] if totals[i] else None
        out.append(f'<td class="num">{totals[i]:,}</td><td class="num">{esc(fmt(flipped))}</td>'
                   "</tr>")
    out.append("</tbody></table>")
    return "".join(out)


def render(report: dict, a: np.ndarray | None = None, b: np.ndarray | None = None,
           run: dict | None = None, divergent: list[dict] | None = None) -> Page:
    """The page for a replay report; `a`/`b` are the compared outputs per request (the
    positive-class score for a binary classifier), used for the distributions."""
    passed = report["verdict"]["passed"]
    page = Page("tandem shadow replay: " + ("PASS" if passed else "FAIL"), meta=[
        f"baseline (A): {report['baseline']}", f"candidate (B): {report['candidate']}",
        f"logs: {report['logs']}", f"seed: {report['seed']}"])
    checks = table(["check", "value", "limit", "verdict"], [
        [c["check"], fmt(c["value"]), fmt(c["limit"]), status(c["passed"])]
        for c in report["verdict"]["checks"]], raw=True)
    page.section("Gate", f"<p>Verdict: {status(passed)}. Every rate and quantile is judged "
                 "by the bound of its bootstrap 95% interval, not its point estimate.</p>",
                 checks)
    i = report["input"]
    duplicates = i["duplicate_examples"]
    note = (f"<p>{duplicates:,} logged example(s) repeat an id logged before (a retry, or a "
            "request sent again): each id is replayed once, at its first logged occurrence, "
            "so n counts distinct requests.</p>" if duplicates else "")
    page.section("Input", note, table(
        ["records", "files", "replayed examples", "torn", "corrupt", "unreadable",
         "shadow records", "failed", "rejected", "duplicates"],
        [[i["records"], i["files"], i["replayed_examples"], i["torn"], i["corrupt"],
          i["unreadable"], i["shadow_records"], i["failed_requests"], i["rejected_requests"],
          duplicates]]))
    if "parity" not in report:
        return page
    p = report["parity"]
    page.section("Parity: A offline vs A as logged",
                 f"<p>{status(p['max_abs_diff'] <= p['tolerance'], 'no skew', 'SKEW')}: "
                 f"max |diff| {esc(fmt(p['max_abs_diff']))}, {p['mismatched']:,} request(s) "
                 f"beyond the tolerance {esc(fmt(p['tolerance']))}. A difference here is "
                 "training/serving skew in A itself and is reported before B is judged.</p>")
    overall = report["overall"]
    figures = []
    if a is not None and b is not None and len(a):
        delta = np.abs(np.asarray(b) - np.asarray(a)).reshape(len(a), -1).max(axis=1)
        hi = float(delta.max()) if delta.max() > 0 else 1.0
        counts, edges = np.histogram(delta, bins=40, range=(0.0, hi))
        limit = next((c["limit"] for c in report["verdict"]["checks"]
                      if c["check"].startswith("p99 |delta|")), None)
        marks = [(float(limit), "p99 limit")] if limit is not None and limit <= hi * 1.5 else []
        figures.append(charts.figure(charts.histogram(
            [("|B - A|", edges, counts)], title="|B - A| per request", xlabel="|Δ|",
            marks=marks, log_y=True), "The distribution of score deltas (log scale)."))
        if np.ndim(a) == 1:
            lo, top = float(min(a.min(), b.min())), float(max(a.max(), b.max()))
            top = top if top > lo else lo + 1.0
            ca, edges = np.histogram(a, bins=40, range=(lo, top))
            cb, _ = np.histogram(b, bins=40, range=(lo, top))
            name = "score" if report["problem"] == "classification" else "prediction"
            figures.append(charts.figure(charts.histogram(
                [("A", edges, ca), ("B", edges, cb)], title=f"{name} distribution",
                xlabel=name), "Each model's outputs on the same requests (calibration shift)."))
            figures.append(charts.figure(charts.density(
                np.asarray(a), np.asarray(b), title="B against A", xlabel=f"A {name}",
                ylabel=f"B {name}"), "Requests off the diagonal changed."))
    mean = overall.get("mean_score") or overall.get("mean_prediction")
    text = (f"<p>Mean output: A {esc(fmt(mean['a']))}, B {esc(fmt(mean['b']))}.</p>"
            if mean else "")
    matrix = ""
    if "flip_matrix" in overall:  # a multi-class model: its mean score per class
        text = "<p>Mean score per class, A → B: " + ", ".join(
            f"{esc(c)} {esc(fmt(x))} → {esc(fmt(y))}" for c, x, y in zip(
                overall["flip_matrix"]["classes"], mean["a"], mean["b"], strict=True)) + ".</p>"
        matrix = ("<h3>Flip matrix</h3><p>Requests by A's class (rows) and B's class "
                  "(columns); off the diagonal, B answered another class than A. |Δ| is the "
                  "largest change of any class's score.</p>"
                  + _flip_matrix(overall["flip_matrix"]))
    page.section(f"B against A ({report['problem']})", text,
                 table(["metric", "value [95% interval]", "n"], _metric_rows(overall)),
                 matrix, "".join(figures))
    for key, groups in sorted(report.get("slices", {}).items()):
        labels = list(groups)
        metric = "symmetric_flip_rate" if report["problem"] == "classification" else None
        parts = []
        if metric and labels:
            limit = next((c["limit"] for c in report["verdict"]["checks"]
                          if c["check"].startswith("symmetric_flip_rate")), None)
            parts.append(charts.figure(charts.intervals(
                labels, [groups[v][metric]["value"] for v in labels],
                [groups[v][metric]["low"] for v in labels],
                [groups[v][metric]["high"] for v in labels],
                title=f"flip rate by {key}", limit=limit, xlabel=metric)))
        rows = []
        for value in labels:
            g = groups[value]
            first = g.get("symmetric_flip_rate") or g["abs_delta"]["mean"]
            rows.append([value, first["n"], _ci(g.get("symmetric_flip_rate")),
                         _ci(g["abs_delta"]["p99"]), _ci(g["abs_delta"]["mean"])])
        parts.append(table([key, "n", "symmetric_flip_rate", "|Δ| p99", "|Δ| mean"], rows))
        page.section(f"By {key}", *parts)
    if "features" in report:  # a replay with candidate features
        page.section(*features_section(report["features"]))
    q = report.get("quality")
    if q:
        rows = []
        for name, entry in q["metrics"].items():
            if name == "n" or entry is None:
                continue
            shown = f"{name} (lower is better)" if name in LOWER_IS_BETTER else name
            rows.append([shown, _ci(entry["a"]), _ci(entry["b"]), _ci(entry["b_minus_a"])])
        unknown = (f" {q['unknown_class']:,} of them are not a class position and are left "
                   "out." if q.get("unknown_class") else "")
        page.section("Quality on labelled traffic",
                     f"<p>{q['matched']:,} replayed request(s) have a label in "
                     f"{esc(q['labels'])}; {q['unmatched']:,} have none yet.{esc(unknown)}</p>",
                     table(["metric", "A", "B", "B - A"], rows))
    if run:
        inf = run.get("inference", {})
        page.section("Inference", table(
            ["batches", "A ms per batch", "B ms per batch"],
            [[inf.get("batches"), inf.get("a_ms_per_batch"), inf.get("b_ms_per_batch")]]))
    if divergent:
        page.section(f"The {len(divergent)} most divergent requests",
                     f"<p>Written with both predictions as tf.Examples to "
                     f"<code>{esc(report['divergent']['file'])}</code>.</p>",
                     table(["request id", "A", "B", "|Δ|"],
                           [[d["id"], d["a"], d["b"], d["delta"]] for d in divergent]))
    return page


def render_text(report: dict, a: np.ndarray | None = None, b: np.ndarray | None = None,
                run: dict | None = None, divergent: list[dict] | None = None) -> str:
    """The page's HTML: what the replay job (components/shadow/replay.py) is given to draw
    report.html with."""
    return render(report, a, b, run, divergent).render()
