"""Shadow replay: how model B's predictions differ from model A's on the same logged traffic.

Pure numpy over the replayed rows, so the Beam job, the TFX component and the tests share it.
Metric names follow TFMA where it has them (symmetric_flip_rate, pos_to_neg_flip_rate,
neg_to_pos_flip_rate). Every rate and quantile carries a bootstrap 95% interval and its n,
and the gate compares the interval's upper bound with the threshold, so a small slice can
neither pass nor fail on noise. The bootstrap is seeded: the same rows and seed give the
same report, byte for byte.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

import numpy as np

CLASSIFICATION, REGRESSION = "classification", "regression"


@dataclasses.dataclass
class Thresholds:
    max_flip_rate: float = 0.05  # symmetric_flip_rate, upper bound of its interval
    max_p99_abs_delta: float = 0.10  # p99 |B - A|, upper bound of its interval
    parity_tolerance: float = 1e-4  # |A offline - A logged|
    min_requests: int = 100
    bootstrap: int = 200
    seed: int = 0


def _round(x: float) -> float:
    return float(round(float(x), 6))


def _interval(values: np.ndarray, stat: Callable[[np.ndarray], float],
              draws: np.ndarray) -> dict[str, Any]:
    """A statistic with its bootstrap 95% interval (over the resamples `draws`) and n."""
    n = len(values)
    if n == 0:
        return {"value": None, "low": None, "high": None, "n": 0}
    point = stat(values)
    boot = np.array([stat(values[d]) for d in draws])
    return {"value": _round(point), "low": _round(np.percentile(boot, 2.5)),
            "high": _round(np.percentile(boot, 97.5)), "n": int(n)}


def _classes(scores: np.ndarray) -> np.ndarray:
    """Predicted class: probability >= 0.5 for a binary score, else the argmax."""
    return (scores >= 0.5).astype(np.int64) if scores.ndim == 1 else scores.argmax(axis=1)


def _positive(scores: np.ndarray) -> np.ndarray:
    return scores if scores.ndim == 1 else scores[:, -1]


def compare(a: np.ndarray, b: np.ndarray, problem: str, thresholds: Thresholds,
            rng: np.random.Generator) -> dict[str, Any]:
    """The comparison of B with A on one set of rows."""
    out: dict[str, Any] = {}
    # One set of resamples serves every statistic (drawn once: drawing them per statistic
    # cost more than the statistics), so the intervals also describe the same resamples.
    draws = rng.integers(0, max(len(a), 1), size=(thresholds.bootstrap, len(a)),
                         dtype=np.int32)
    if problem == CLASSIFICATION:
        ca, cb = _classes(a), _classes(b)
        flips = (ca != cb).astype(np.float64)
        out["agreement"] = _interval(1.0 - flips, np.mean, draws)
        out["symmetric_flip_rate"] = _interval(flips, np.mean, draws)
        if a.ndim == 1:
            out["pos_to_neg_flip_rate"] = _interval(((ca == 1) & (cb == 0)).astype(float),
                                                    np.mean, draws)
            out["neg_to_pos_flip_rate"] = _interval(((ca == 0) & (cb == 1)).astype(float),
                                                    np.mean, draws)
        delta = np.abs(_positive(b) - _positive(a))
        out["mean_score"] = {"a": _round(_positive(a).mean()), "b": _round(_positive(b).mean())}
    else:
        delta = np.abs(b - a)
        relative = delta / np.maximum(np.abs(a), 1e-9)
        out["relative_delta"] = {
            f"p{q}": _interval(relative, lambda x, q=q: np.percentile(x, q), draws)
            for q in (50, 90, 99)}
        out["mean_prediction"] = {"a": _round(a.mean()), "b": _round(b.mean())}
    out["abs_delta"] = {
        "mean": _interval(delta, np.mean, draws),
        **{f"p{q}": _interval(delta, lambda x, q=q: np.percentile(x, q), draws)
           for q in (50, 90, 99)},
        "max": _round(delta.max()) if len(delta) else None,
    }
    return out


def verdict(overall: dict[str, Any], parity: dict[str, Any], n: int, problem: str,
            thresholds: Thresholds) -> dict[str, Any]:
    """Pass or fail, with each check and the numbers that decided it."""
    checks = []

    def check(name: str, value, limit, ok: bool) -> None:
        checks.append({"check": name, "value": value, "limit": limit, "passed": bool(ok)})

    check("parity: max |A offline - A logged|", parity["max_abs_diff"],
          thresholds.parity_tolerance, parity["max_abs_diff"] <= thresholds.parity_tolerance)
    check("replayed requests", n, thresholds.min_requests, n >= thresholds.min_requests)
    if problem == CLASSIFICATION:
        high = overall["symmetric_flip_rate"]["high"]
        check("symmetric_flip_rate (95% upper bound)", high, thresholds.max_flip_rate,
              high is not None and high <= thresholds.max_flip_rate)
    high = overall["abs_delta"]["p99"]["high"]
    check("p99 |delta| (95% upper bound)", high, thresholds.max_p99_abs_delta,
          high is not None and high <= thresholds.max_p99_abs_delta)
    return {"passed": all(c["passed"] for c in checks), "checks": checks}
