"""Drift and skew measures between two datasets' TFDV statistics, and the decision to alert.

Everything is computed from what the statistics protos already hold, so it works on any
TFDV statistics, from the pipeline, the monitor or a notebook:

- numeric features: **PSI** over the reference's equal-mass bins (its quantiles), with each
  dataset's mass per bin read from its own quantiles; **Wasserstein-1** as the mean distance
  between the two quantile functions; the **Kolmogorov-Smirnov** distance between the CDFs
  that the quantiles describe, and its p-value;
- categorical features: **PSI** and **L-infinity** over the values either dataset ranks (the
  rest pooled as one "other" value), and a chi-square test's p-value.

A feature alerts only when both hold: its test survives Benjamini-Hochberg control of the
false-discovery rate across all the features compared at once (`alpha`), and its effect size
reaches the feature's threshold (PSI by default; Wasserstein or L-infinity when configured).
Significance alone would alarm on tiny, harmless differences in large windows; a fixed
threshold alone would alarm on noise in small ones (TFDV's Jensen-Shannon comparator does:
identical distributions sampled at different sizes differ). Identifiers (schemas/identifiers.py)
are never judged: their values are new in every dataset by design. Windows smaller than
`min_examples` are reported as too small, not judged. Each measure carries a parametric
bootstrap 95% interval (both datasets' bin counts resampled) and both n.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np

from tandem.schemas.statistics import common_stats, feature_name

EPS = 1e-4  # floor on a bin's proportion in PSI (an empty bin would be infinite)
OTHER = "__other__"


@dataclasses.dataclass
class FeatureThresholds:
    psi: float | None = 0.15
    wasserstein: float | None = None  # in the feature's units; None: reported, not gated
    linf: float | None = None
    missing: float | None = 0.05
    skip: bool = False


@dataclasses.dataclass
class DriftConfig:
    default: FeatureThresholds = dataclasses.field(default_factory=FeatureThresholds)
    features: dict[str, FeatureThresholds] = dataclasses.field(default_factory=dict)
    alpha: float = 0.05  # false-discovery rate across features (Benjamini-Hochberg)
    min_examples: int = 200
    bins: int = 10
    bootstrap: int = 200
    seed: int = 0
    # Identifiers (schemas/identifiers.py), by name, with why: described, never judged.
    identifiers: dict[str, str] = dataclasses.field(default_factory=dict)

    def thresholds(self, feature: str) -> FeatureThresholds:
        if feature in self.identifiers:
            return FeatureThresholds(skip=True)
        return self.features.get(feature, self.default)


def _round(x: float | None) -> float | None:
    return None if x is None or x != x else float(round(float(x), 6))


def _numeric_quantiles(feature) -> np.ndarray | None:
    for h in feature.num_stats.histograms:
        if h.type == h.QUANTILES and h.buckets:
            return np.array([h.buckets[0].low_value] + [b.high_value for b in h.buckets])
    return None


def _cdf(quantiles: np.ndarray, x: np.ndarray) -> np.ndarray:
    """The CDF at x of a distribution given by equally spaced quantiles (0, 1/k, ..., 1):
    the share of quantile points at or below x, which handles repeated values (ties)."""
    k = len(quantiles) - 1
    below = np.searchsorted(quantiles, x, side="right")
    # Points strictly inside the range interpolate linearly between quantile points.
    lo = np.clip(below - 1, 0, k)
    hi = np.clip(below, 0, k)
    span = quantiles[hi] - quantiles[lo]
    frac = np.where(span > 0, (x - quantiles[lo]) / np.where(span > 0, span, 1), 0.0)
    value = np.where(below >= k + 1, 1.0, np.where(below <= 0, 0.0, (lo + frac) / k))
    return np.clip(value, 0.0, 1.0)


def _psi(p: np.ndarray, q: np.ndarray) -> float:
    p = np.maximum(p / max(p.sum(), 1e-12), EPS)
    q = np.maximum(q / max(q.sum(), 1e-12), EPS)
    return float(np.sum((q - p) * np.log(q / p)))


def _count(feature) -> int:
    return int(common_stats(feature).num_non_missing)


def _interval(fn, p_counts: np.ndarray, q_counts: np.ndarray, draws: int,
              rng: np.random.Generator) -> tuple[float | None, float | None]:
    """A parametric bootstrap interval: both datasets' bin counts redrawn from their
    observed proportions at their own n."""
    n_p, n_q = int(round(p_counts.sum())), int(round(q_counts.sum()))
    if not n_p or not n_q or not draws:
        return None, None
    ps = rng.multinomial(n_p, p_counts / p_counts.sum(), size=draws)
    qs = rng.multinomial(n_q, q_counts / q_counts.sum(), size=draws)
    values = np.array([fn(a, b) for a, b in zip(ps, qs, strict=True)])
    return float(np.percentile(values, 2.5)), float(np.percentile(values, 97.5))


def numeric_measures(ref, cur, config: DriftConfig, rng: np.random.Generator) -> dict | None:
    """PSI, Wasserstein-1 and KS (with p-value) between two numeric features."""
    from scipy.stats import kstwo

    qr, qc = _numeric_quantiles(ref), _numeric_quantiles(cur)
    if qr is None or qc is None:
        return None
    n_r, n_c = _count(ref), _count(cur)
    # PSI on the reference's equal-mass bins; the outer edges are open.
    inner = np.unique(np.quantile(qr, np.linspace(0, 1, config.bins + 1)[1:-1]))


    def mass(q):
        cdf = np.concatenate([[0.0], _cdf(q, inner), [1.0]])
        return np.diff(cdf)

    p, q = mass(qr) * n_r, mass(qc) * n_c
    psi = _psi(p, q)
    psi_lo, psi_hi = _interval(_psi, p, q, config.bootstrap, rng)
    # Wasserstein-1: the mean gap between the quantile functions on a common grid.
    u = np.linspace(0, 1, 201)
    grid_r = np.interp(u, np.linspace(0, 1, len(qr)), qr)
    grid_c = np.interp(u, np.linspace(0, 1, len(qc)), qc)
    w1 = float(np.trapz(np.abs(grid_r - grid_c), u))
    points = np.union1d(qr, qc)
    ks = float(np.max(np.abs(_cdf(qr, points) - _cdf(qc, points)))) if len(points) else 0.0
    ne = n_r * n_c / max(n_r + n_c, 1)
    p_value = float(kstwo.sf(ks, max(int(round(ne)), 1))) if ne else 1.0
    return {"kind": "numeric", "psi": {"value": _round(psi), "low": _round(psi_lo),
                                       "high": _round(psi_hi)},
            "wasserstein": _round(w1), "ks": _round(ks), "p_value": p_value,
            "n": [n_r, n_c]}


def _ranked(feature) -> dict[str, float]:
    s = feature.string_stats
    if s.rank_histogram.buckets:
        return {b.label: b.sample_count for b in s.rank_histogram.buckets}
    return {v.value: v.frequency for v in s.top_values}


def categorical_measures(ref, cur, config: DriftConfig,
                         rng: np.random.Generator) -> dict | None:
    """PSI, L-infinity and a chi-square p-value between two categorical features."""
    from scipy.stats import chi2_contingency

    if not (ref.HasField("string_stats") and cur.HasField("string_stats")):
        return None
    rr, rc = _ranked(ref), _ranked(cur)
    n_r, n_c = _count(ref), _count(cur)
    values = sorted(set(rr) | set(rc))
    p = np.array([rr.get(v, 0.0) for v in values] + [max(n_r - sum(rr.values()), 0.0)])
    q = np.array([rc.get(v, 0.0) for v in values] + [max(n_c - sum(rc.values()), 0.0)])
    if not p.sum() or not q.sum():
        return None
    psi = _psi(p, q)
    psi_lo, psi_hi = _interval(_psi, p, q, config.bootstrap, rng)
    linf = float(np.max(np.abs(p / p.sum() - q / q.sum())))
    keep = (p + q) > 0
    table = np.vstack([p[keep], q[keep]])
    if table.shape[1] > 1:
        p_value = float(chi2_contingency(table, correction=False)[1])
    else:
        p_value = 1.0
    new = [v for v in values if rr.get(v, 0) == 0 and rc.get(v, 0) > 0]
    return {"kind": "categorical", "psi": {"value": _round(psi), "low": _round(psi_lo),
                                           "high": _round(psi_hi)},
            "linf": _round(linf), "p_value": p_value, "n": [n_r, n_c],
            "new_values": new[:10]}


def _missing_change(ref, cur, n_ref: int, n_cur: int) -> dict[str, Any]:
    """The share of examples lacking the feature in each dataset, and a two-proportion
    z-test's p-value for the change."""
    from scipy.stats import norm

    present_r, present_c = _count(ref), _count(cur)
    a = 1 - present_r / n_ref if n_ref else 0.0
    b = 1 - present_c / n_cur if n_cur else 0.0
    pooled = (n_ref * a + n_cur * b) / max(n_ref + n_cur, 1)
    se = np.sqrt(pooled * (1 - pooled) * (1 / max(n_ref, 1) + 1 / max(n_cur, 1)))
    p_value = float(2 * norm.sf(abs(b - a) / se)) if se > 0 else (1.0 if a == b else 0.0)
    # The change's 95% (Wald) interval, from each side's own variance.
    spread = 1.96 * np.sqrt(a * (1 - a) / max(n_ref, 1) + b * (1 - b) / max(n_cur, 1))
    return {"ref": _round(max(a, 0.0)), "cur": _round(max(b, 0.0)), "change": _round(b - a),
            "low": _round(b - a - spread), "high": _round(b - a + spread),
            "p_value": p_value}


def benjamini_hochberg(p_values: list[float]) -> list[float]:
    """BH-adjusted p-values (q-values), in input order."""
    p = np.asarray(p_values, float)
    m = len(p)
    if not m:
        return []
    order = np.argsort(p)
    ranked = p[order] * m / np.arange(1, m + 1)
    adjusted = np.minimum.accumulate(ranked[::-1])[::-1]
    out = np.empty(m)
    out[order] = np.minimum(adjusted, 1.0)
    return out.tolist()


def compare_datasets(ref, cur, config: DriftConfig,
                     features: list[str] | None = None) -> dict[str, Any]:
    """Every feature of `cur` also in `ref`: its measures, its BH q-value and whether it
    alerts. `ref`/`cur` are DatasetFeatureStatistics (one dataset each)."""
    rng = np.random.default_rng(config.seed)
    ref_by = {feature_name(f): f for f in ref.features}
    out: dict[str, Any] = {"n": [int(ref.num_examples), int(cur.num_examples)],
                           "alpha": config.alpha, "min_examples": config.min_examples,
                           "thresholds": dataclasses.asdict(config.default), "features": {},
                           "identifiers": sorted(n for n in map(feature_name, cur.features)
                                                 if n in config.identifiers)}
    if min(ref.num_examples, cur.num_examples) < config.min_examples:
        out["too_small"] = True
        return out
    measured: dict[str, dict] = {}
    for feature in sorted(cur.features, key=feature_name):
        name = feature_name(feature)
        if name not in ref_by or (features is not None and name not in features):
            continue
        if config.thresholds(name).skip:
            continue
        r = ref_by[name]
        if feature.HasField("num_stats") and r.HasField("num_stats"):
            m = numeric_measures(r, feature, config, rng)
        else:
            m = categorical_measures(r, feature, config, rng)
        if m is None:
            m = {"kind": "other", "psi": {"value": None, "low": None, "high": None},
                 "p_value": 1.0, "n": [_count(r), _count(feature)]}
        m["missing"] = _missing_change(r, feature, ref.num_examples, cur.num_examples)
        m["p_value"] = min(m["p_value"], m["missing"]["p_value"])
        measured[name] = m
    names = list(measured)
    q_values = benjamini_hochberg([measured[n]["p_value"] for n in names])
    for name, q in zip(names, q_values, strict=True):
        m = measured[name]
        m["q_value"] = _round(q)
        m["p_value"] = _round(m["p_value"])
        t = config.thresholds(name)
        reasons = []
        if t.psi is not None and m["psi"]["value"] is not None and m["psi"]["value"] >= t.psi:
            reasons.append(f"psi {m['psi']['value']:.3f} >= {t.psi:g}")
        if t.wasserstein is not None and m.get("wasserstein") is not None \
                and m["wasserstein"] >= t.wasserstein:
            reasons.append(f"wasserstein {m['wasserstein']:.4g} >= {t.wasserstein:g}")
        if t.linf is not None and m.get("linf") is not None and m["linf"] >= t.linf:
            reasons.append(f"linf {m['linf']:.3f} >= {t.linf:g}")
        if t.missing is not None and abs(m["missing"]["change"]) >= t.missing:
            reasons.append(f"missing {m['missing']['ref']:.1%} -> {m['missing']['cur']:.1%}")
        m["alert"] = bool(reasons) and q <= config.alpha
        m["reasons"] = reasons
    out["features"] = measured
    out["alerts"] = sorted(n for n, m in measured.items() if m["alert"])
    return out
