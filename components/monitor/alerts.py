"""Monitor, last stage: what drifted, said to the outside (a Prometheus textfile, a webhook).

Both are optional; the summary and the page are written either way.
"""

from __future__ import annotations

import json
import os

from tandem.components.monitor.sources import attribution_text
from tandem.schemas.files import atomic_write


def alert_text(entry: dict) -> str:
    parts = []
    # A drift in examples from another snapshot than the earlier windows' names it.
    parts += [attribution_text(a) for a in entry.get("drift", {}).get("sources", [])
              if a["changed_source"]]
    for kind in ("drift", "skew", "prediction_drift"):
        names = entry.get(kind, {}).get("alerts", [])
        if names:
            parts.append(f"{kind.replace('_', ' ')}: {', '.join(names)}")
    if entry["schema_anomalies"]:
        parts.append(f"schema: {', '.join(sorted(entry['schema_anomalies']))}")
    return ("; " + "; ".join(parts)) if parts else ""


def send_alerts(summary: dict, monitor, config) -> None:
    """Drift and skew as Prometheus metrics (a textfile for node_exporter's collector) and a
    webhook POST; both optional."""
    if monitor.textfile:
        judged = [w for w in summary["windows"] if not w["too_small"]]
        last = judged[-1] if judged else {}
        families = {  # family: (the window's judgment, help)
            "tandem_monitor_drift": (
                "drift", "1 when the feature drifted in the latest judged window"),
            "tandem_monitor_drift_psi": (
                "drift", "the feature's PSI against the previous window"),
            "tandem_monitor_skew": ("skew", "1 when the feature is skewed against training"),
            "tandem_monitor_skew_psi": (
                "skew", "the feature's PSI against the training statistics"),
            "tandem_monitor_prediction_drift": (
                "prediction_drift", "1 when the model's answer (feature: the answer's "
                "column) drifted in the latest judged window"),
            "tandem_monitor_prediction_drift_psi": (
                "prediction_drift", "the answer column's PSI against the previous window"),
        }
        lines = []
        for family, (kind, text) in families.items():
            lines += [f"# HELP {family} {text}", f"# TYPE {family} gauge"]
            for name, m in sorted(last.get(kind, {}).get("features", {}).items()):
                labels = f'{{model="{config.model_name}",feature="{name}"}}'
                if family.endswith("_psi"):
                    if m["psi"]["value"] is not None:
                        lines.append(f"{family}{labels} {m['psi']['value']}")
                else:
                    lines.append(f"{family}{labels} {int(m['alert'])}")
        os.makedirs(os.path.dirname(os.path.abspath(monitor.textfile)), exist_ok=True)
        # the collector never reads a half-written file
        atomic_write(monitor.textfile, "\n".join(lines) + "\n")
    if monitor.webhook and (summary["drift_features"] or summary["skew_features"]
                            or summary["prediction_drift_features"]):
        import urllib.request

        body = json.dumps({"model": config.model_name, "drift": summary["drift_features"],
                           "skew": summary["skew_features"],
                           "prediction_drift": summary["prediction_drift_features"],
                           "report": summary.get("report"), "logs": summary["logs"]}).encode()
        request = urllib.request.Request(monitor.webhook, data=body, method="POST",
                                         headers={"Content-Type": "application/json"})
        try:
            urllib.request.urlopen(request, timeout=10).close()
            summary["webhook"] = "sent"
        except OSError as e:
            summary["webhook"] = f"failed: {e}"
