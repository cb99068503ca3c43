"""Monitor: drift traced to the feature-source snapshot that decorated the drifted examples.

The gateway logs, per request, the version of each source it decorated from
(schemas/request_log.py's `sources`). When the log spans more than one version, the monitor
cuts its windows by version too (windows.py: a window's requests all come from one snapshot),
so a window that drifts against the one before names the snapshot its examples came from, and
the one the earlier windows came from: a feature table reloaded with a bug is told apart from
traffic that changed.
"""

from __future__ import annotations

from typing import Any


def source_label(sources: dict[str, str]) -> str:
    """How a record's sources are named: kind@version (joined by + for several)."""
    return "+".join(f"{kind}@{version}" for kind, version in sorted(sources.items()))


def window_key(key: str, label: str, first: str | None) -> str:
    """A window's key, with the snapshot named when it is not the log's first one."""
    return f"{key} {label}" if label and first is not None and label != first else key


def attribute(entry: dict[str, Any], earlier: list[str]) -> list[dict[str, Any]]:
    """For each feature that drifted in this window: the snapshot its examples were decorated
    from, the share of the window's examples it decorated, and the snapshots of the windows
    it was compared with (`earlier`). Empty when the log names no source."""
    sources = entry.get("sources") or {}
    drift = entry.get("drift") or {}
    if not sources or not drift.get("alerts"):
        return []
    label, count = max(sorted(sources.items()), key=lambda kv: kv[1])
    share = count / max(sum(sources.values()), 1)
    out = []
    for name in drift["alerts"]:
        psi = (drift["features"][name].get("psi") or {}).get("value")
        out.append({"feature": name, "psi": psi, "source": label, "share": round(share, 6),
                    "earlier": earlier, "changed_source": label not in earlier})
    return out


def attribution_text(a: dict[str, Any]) -> str:
    """e.g. "age drifted (PSI 1.9); 100% of the drifted examples were decorated from
    sqlite@3f2a…; earlier windows sqlite@91c0…"."""
    psi = "" if a["psi"] is None else f" (PSI {a['psi']:.3g})"
    earlier = ", ".join(a["earlier"]) or "none"
    return (f"{a['feature']} drifted{psi}; {a['share']:.0%} of the drifted examples were "
            f"decorated from {a['source']}; earlier windows {earlier}")
