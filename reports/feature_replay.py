"""The replay report's section for a replay with candidate features: which joined columns the
candidate snapshot changed, how much of the divergence each explains, and the entities it
lacks."""

from __future__ import annotations

from tandem.reports.html import esc, fmt, table


def features_section(f: dict) -> tuple[str, str]:
    """(title, HTML) of report.json's `features` section."""
    blamed = ", ".join(f["blamed"]) or "no column"
    text = (f"<p>B answered on the logged requests re-decorated from <code>{esc(f['candidate'])}"
            f"</code> in place of <code>{esc(f['serving'])}</code>: "
            f"{f['redecorated_differently']:,} of {f['requests']:,} requests were decorated "
            f"differently, {f['divergent']:,} diverged (|B - A| &gt; "
            f"{esc(fmt(f['divergence_threshold']))}). Divergence explained by: "
            f"<b>{esc(blamed)}</b>.</p>"
            f"<p>{f['missing_entities']:,} request(s) name an entity the candidate lacks and the "
            f"serving snapshot has (gated); {f['unknown_entities']:,} name one that both lack "
            "(served with defaults already).</p>"
            "<p class=\"note\">Each changed column of a divergent request is swapped in alone "
            "and B run again; a column's share is its solo effect over the total |B - A|. "
            "Shares need not add up to 1 when columns interact.</p>")
    rows = [[col, m["changed"], m["changed_divergent"], fmt(m["share"]), fmt(m["mean_effect"])]
            for col, m in sorted(f["columns"].items(), key=lambda kv: -kv[1]["share"])]
    if f.get("model_share"):
        rows.append(["(the model change)", "", "", fmt(f["model_share"]), ""])
    return "Candidate features: attribution", text + table(
        ["column", "requests changed", "divergent requests changed", "share of divergence",
         "mean |effect|"], rows)
