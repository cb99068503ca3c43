"""The feature-source diff as HTML: per table its entity changes, per column how many values
changed and how its distribution moved, with both snapshots' distributions drawn."""

from __future__ import annotations

import numpy as np

from tandem.reports import charts
from tandem.reports.html import Page, esc, fmt, status, table


def _column_figure(table_name: str, column: str, m: dict, names: tuple[str, str]) -> str:
    plot = m.get("plot") or {}
    if "edges" in plot:
        fig = charts.histogram([(names[0], np.asarray(plot["edges"]), np.asarray(plot["from"])),
                                (names[1], np.asarray(plot["edges"]), np.asarray(plot["to"]))],
                               title=f"{table_name}.{column}", xlabel=column)
    elif plot.get("values"):
        n_from, n_to = (max(n, 1) for n in plot["n"])
        fig = charts.top_values([(names[0], plot["values"], [c / n_from for c in plot["from"]]),
                                 (names[1], plot["values"], [c / n_to for c in plot["to"]])],
                                title=f"{table_name}.{column}")
    else:
        return ""
    return charts.figure(fig, f"{column}: both snapshots, as shares of entities")


def render(report: dict) -> Page:
    names = (report["from"], report["to"])
    shifted = report["shifted"]
    verdict = ("identical" if report["identical"] else
               f"{len(shifted)} column(s) shifted" if shifted else "changed, no column shifted")
    page = Page(f"tandem features diff: {verdict}",
                meta=[f"from: {names[0]}", f"to: {names[1]}",
                      f"shift: PSI >= {report['drift']['psi']} with FDR {report['drift']['alpha']}"
                      " (the monitor's rule)"])
    summary = [[t, d["entities"]["from"], d["entities"]["to"], d["entities"]["added"],
                d["entities"]["removed"], d["entities"]["changed"],
                ", ".join(c for c, m in d["columns"].items() if m["shifted"]) or "–"]
               for t, d in report["tables"].items()]
    summary += [[t, "–", "new table", "", "", "", ""] for t in report["tables_added"]]
    summary += [[t, "table removed", "–", "", "", "", ""] for t in report["tables_removed"]]
    page.section("Tables", table(["table", "entities (from)", "entities (to)", "added",
                                  "removed", "changed", "shifted columns"], summary))
    for t, d in report["tables"].items():
        rows = []
        figures = []
        for c, m in d["columns"].items():
            rows.append([c, m["type"], m["changed"], f"{m['changed_share']:.1%}", fmt(m["psi"]),
                         fmt(m["wasserstein"]), fmt(m["linf"]),
                         status(not m["shifted"], "stable", "SHIFTED")])
            if m["changed"] or m["shifted"]:
                figures.append(_column_figure(t, c, m, names))
        ex = d["examples"]
        listed = "".join(f"<p class=\"note\">{kind}: {esc(', '.join(keys))}</p>"
                         for kind, keys in ex.items() if keys)
        extra = "".join(f"<p>column {esc(c)} {what}</p>" for what, cols in
                        (("added", d["columns_added"]), ("removed", d["columns_removed"]))
                        for c in cols)
        page.section(f"{t} (key {d['key']})", listed, extra, table(
            ["column", "type", "values changed", "share changed", "PSI", "Wasserstein",
             "L∞", "distribution"], rows, raw=True), "".join(figures))
    return page


def render_text(report: dict) -> str:
    return render(report).render()
