"""Shadow replay: how model B's predictions differ from model A's on the same logged traffic.

Pure numpy over the replayed rows, so the Beam job, the TFX component and the tests share it.
Metric names follow TFMA where it has them (symmetric_flip_rate, pos_to_neg_flip_rate,
neg_to_pos_flip_rate). Every rate and quantile carries a bootstrap 95% interval and its n,
and the gate compares the interval's upper bound with the threshold, so a small slice can
neither pass nor fail on noise. The bootstrap is seeded: the same rows and seed give the
same report, byte for byte.

Three kinds of output are compared: a binary probability [n], class scores [n, k] of a
multi-class model (k > 2; a model answering [n, 2] keeps the report a binary one had), and a
regression value [n].
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

import numpy as np

from tandem.schemas.contracts import LOWER_IS_BETTER

CLASSIFICATION, REGRESSION = "classification", "regression"


@dataclasses.dataclass
class Thresholds:
    """The replay's gate. None (`null` in the replay YAML): reported, not gated."""

    max_flip_rate: float | None = 0.05  # symmetric_flip_rate, upper bound of its interval
    max_p99_abs_delta: float | None = 0.10  # p99 |B - A|, upper bound of its interval
    parity_tolerance: float = 1e-4  # |A offline - A logged|
    min_requests: int = 100  # fewer replayed requests fail the gate
    # With labels: how much worse B's AUC/accuracy (or RMSE, MAE, log loss) may be than A's,
    # in each metric's own units, judged by the pessimistic bound of B - A's interval. None:
    # quality is reported, not gated.
    max_quality_drop: float | None = None
    bootstrap: int = 200  # resamples behind every interval
    seed: int = 0  # of the resamples: the same inputs give the same report
    # A replay with candidate features (components/shadow/features_replay.py): how many
    # replayed requests may name an entity the candidate snapshot lacks and the serving one
    # has. None: reported, not gated.
    max_missing_entities: int | None = 0


def _round(x: float) -> float:
    return float(round(float(x), 6))


RESAMPLE_CELLS = 1 << 22  # values gathered per block of resamples (32 MB of float64)


def _resampled(values: np.ndarray, draws: np.ndarray, stat: Callable[[np.ndarray], Any]
               ) -> np.ndarray:
    """`stat` of every resample, computed for a block of resamples at once: `stat` takes a
    [resamples, n] matrix and reduces its last axis, so each row gives what `stat` would give
    that resample alone. Blocks keep memory flat however many requests were replayed."""
    block = max(1, RESAMPLE_CELLS // max(1, draws.shape[1]))
    return np.concatenate([stat(values[draws[i:i + block]])
                           for i in range(0, len(draws), block)], axis=-1)


def _summary(point: float, boot: np.ndarray, n: int) -> dict[str, Any]:
    return {"value": _round(point), "low": _round(np.percentile(boot, 2.5)),
            "high": _round(np.percentile(boot, 97.5)), "n": int(n)}


def _empty() -> dict[str, Any]:
    return {"value": None, "low": None, "high": None, "n": 0}


def _means(named: dict[str, np.ndarray], draws: np.ndarray) -> dict[str, dict[str, Any]]:
    """Each array's mean with its bootstrap 95% interval (over the resamples `draws`) and n.
    A resample's mean is its counts (how often it drew each row) times the values over n:
    one pass of counts serves every array, and none is gathered resample by resample."""
    n = draws.shape[1]
    if not n:
        return {name: _empty() for name in named}
    values = np.stack(list(named.values()), axis=1).astype(np.float64)  # [n, statistics]
    block = max(1, RESAMPLE_CELLS // n)
    boot = []
    for i in range(0, len(draws), block):
        rows = draws[i:i + block]
        at = (np.arange(len(rows), dtype=np.int64)[:, None] * n + rows).ravel()
        counts = np.bincount(at, minlength=len(rows) * n).reshape(len(rows), n)
        boot.append(counts.astype(np.float64) @ values / n)
    boot = np.concatenate(boot)
    return {name: _summary(np.mean(v), boot[:, j], n) for j, (name, v) in enumerate(named.items())}


def _quantiles(values: np.ndarray, draws: np.ndarray, qs: tuple[int, ...]
               ) -> dict[str, dict[str, Any]]:
    """Percentiles `qs` with their bootstrap 95% intervals, all from one partition of each
    resample: {"p50": {...}, ...}."""
    if not len(values):
        return {f"p{q}": _empty() for q in qs}
    points = np.percentile(values, qs)
    boot = _resampled(values, draws, lambda m: np.percentile(m, qs, axis=-1))
    return {f"p{q}": _summary(points[i], boot[i], len(values)) for i, q in enumerate(qs)}


def _classes(scores: np.ndarray) -> np.ndarray:
    """Predicted class: probability >= 0.5 for a binary score, else the argmax."""
    return (scores >= 0.5).astype(np.int64) if scores.ndim == 1 else scores.argmax(axis=1)


def _positive(scores: np.ndarray) -> np.ndarray:
    return scores if scores.ndim == 1 else scores[:, -1]


def multiclass(scores: np.ndarray) -> bool:
    """Class scores of more than two classes, [n, k]."""
    return scores.ndim == 2 and scores.shape[1] > 2


def flip_matrix(ca: np.ndarray, cb: np.ndarray, k: int,
                classes: list[str] | None = None) -> dict[str, Any]:
    """How many requests A put in each class (rows) and B in each (columns), in the order of
    the score columns; named by `classes` when it names all k of them."""
    counts = np.zeros((k, k), dtype=np.int64)
    np.add.at(counts, (ca, cb), 1)
    names = list(classes) if classes is not None and len(classes) == k else \
        [str(i) for i in range(k)]
    return {"classes": names, "counts": counts.tolist()}


def compare(a: np.ndarray, b: np.ndarray, problem: str, thresholds: Thresholds,
            rng: np.random.Generator, classes: list[str] | None = None) -> dict[str, Any]:
    """The comparison of B with A on one set of rows; `classes` names a multi-class model's
    score columns."""
    out: dict[str, Any] = {}
    # One set of resamples serves every statistic (drawn once: drawing them per statistic
    # cost more than the statistics), so the intervals also describe the same resamples.
    draws = rng.integers(0, max(len(a), 1), size=(thresholds.bootstrap, len(a)),
                         dtype=np.int32)
    if problem == CLASSIFICATION:
        ca, cb = _classes(a), _classes(b)
        flips = (ca != cb).astype(np.float64)
        means = {"agreement": 1.0 - flips, "symmetric_flip_rate": flips}
        if a.ndim == 1:
            means["pos_to_neg_flip_rate"] = ((ca == 1) & (cb == 0)).astype(float)
            means["neg_to_pos_flip_rate"] = ((ca == 0) & (cb == 1)).astype(float)
        out.update(_means(means, draws))
        if multiclass(a):
            out["flip_matrix"] = flip_matrix(ca, cb, a.shape[1], classes)
            # Every class's score can move, not only the last one's: the largest move counts.
            delta = np.abs(b - a).max(axis=1)
            out["mean_score"] = {"a": [_round(v) for v in a.mean(axis=0)],
                                 "b": [_round(v) for v in b.mean(axis=0)]}  # per class
        else:
            delta = np.abs(_positive(b) - _positive(a))
            out["mean_score"] = {"a": _round(_positive(a).mean()),
                                 "b": _round(_positive(b).mean())}
    else:
        delta = np.abs(b - a)
        relative = delta / np.maximum(np.abs(a), 1e-9)
        out["relative_delta"] = _quantiles(relative, draws, (50, 90, 99))
        out["mean_prediction"] = {"a": _round(a.mean()), "b": _round(b.mean())}
    out["abs_delta"] = {
        "mean": _means({"mean": delta}, draws)["mean"],
        **_quantiles(delta, draws, (50, 90, 99)),
        "max": _round(delta.max()) if len(delta) else None,
    }
    return out


def verdict(overall: dict[str, Any], parity: dict[str, Any], n: int, problem: str,
            thresholds: Thresholds, quality: dict[str, Any] | None = None,
            classes: tuple[list[str], list[str]] | None = None) -> dict[str, Any]:
    """Pass or fail, with each check and the numbers that decided it. `classes`: A's and B's
    class names, when both models name them (a multi-class replay compares score columns by
    position, which means nothing unless both models order the same classes alike)."""
    checks = []

    def check(name: str, value, limit, ok: bool) -> None:
        checks.append({"check": name, "value": value, "limit": limit, "passed": bool(ok)})

    check("parity: max |A offline - A logged|", parity["max_abs_diff"],
          thresholds.parity_tolerance, parity["max_abs_diff"] <= thresholds.parity_tolerance)
    check("replayed requests", n, thresholds.min_requests, n >= thresholds.min_requests)
    if classes is not None:
        check("classes: B's, in order, are A's", classes[1], classes[0], classes[1] == classes[0])
    if problem == CLASSIFICATION and thresholds.max_flip_rate is not None:
        high = overall["symmetric_flip_rate"]["high"]
        check("symmetric_flip_rate (95% upper bound)", high, thresholds.max_flip_rate,
              high is not None and high <= thresholds.max_flip_rate)
    if thresholds.max_p99_abs_delta is not None:
        high = overall["abs_delta"]["p99"]["high"]
        check("p99 |delta| (95% upper bound)", high, thresholds.max_p99_abs_delta,
              high is not None and high <= thresholds.max_p99_abs_delta)
    if thresholds.max_quality_drop is not None and quality:
        for name, entry in quality.items():
            if name == "n" or entry is None:
                continue
            diff = entry["b_minus_a"]
            if name in LOWER_IS_BETTER:  # B may not exceed A by more than the limit
                bound = diff["high"]
                ok = bound is not None and bound <= thresholds.max_quality_drop
                check(f"{name} B - A (95% upper bound)", bound, thresholds.max_quality_drop, ok)
            else:
                bound = diff["low"]
                ok = bound is not None and bound >= -thresholds.max_quality_drop
                check(f"{name} B - A (95% lower bound)", bound, -thresholds.max_quality_drop, ok)
    return {"passed": all(c["passed"] for c in checks), "checks": checks}


def _auc(scores: np.ndarray, labels: np.ndarray) -> float:
    """ROC AUC by the rank-sum (Mann-Whitney) statistic, ties averaged; NaN with one class."""
    from scipy.stats import rankdata

    positives = labels > 0.5
    n_pos = int(positives.sum())
    n_neg = len(labels) - n_pos
    if n_pos == 0 or n_neg == 0:
        return float("nan")
    ranks = rankdata(scores)
    return float((ranks[positives].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))


def _log_loss(scores: np.ndarray, labels: np.ndarray) -> float:
    """Mean negative log of the score given to the true class (a class position); a score of
    0 is taken as 1e-15, as scikit-learn did, so one confident miss costs ~34.5, not infinity."""
    p = scores[np.arange(len(labels)), labels.astype(np.int64)]
    return float(-np.mean(np.log(np.clip(p, 1e-15, 1.0))))


def quality(a: np.ndarray, b: np.ndarray, labels: np.ndarray, problem: str,
            thresholds: Thresholds, rng: np.random.Generator) -> dict[str, Any]:
    """A's and B's quality on the same labelled traffic, and B - A, each with its bootstrap
    interval over the same resamples (so the difference's interval accounts for the two
    models being scored on the same requests). A multi-class label is a class position."""
    n = len(labels)
    draws = rng.integers(0, max(n, 1), size=(thresholds.bootstrap, n), dtype=np.int32)
    metrics: dict[str, Callable[[np.ndarray, np.ndarray], float]] = {}
    if problem == CLASSIFICATION:
        if a.ndim == 1:
            metrics["auc"] = _auc
        metrics["accuracy"] = lambda s, y: float((_classes(s) == y.astype(np.int64)).mean())
        if multiclass(a):
            metrics["log_loss"] = _log_loss
    else:
        metrics["rmse"] = lambda s, y: float(np.sqrt(np.mean((s - y) ** 2)))
        metrics["mae"] = lambda s, y: float(np.mean(np.abs(s - y)))
    out: dict[str, Any] = {"n": int(n)}
    for name, metric in metrics.items():
        if n == 0:
            out[name] = None
            continue
        index = np.arange(n)
        entry = {}
        for model, scores in (("a", a), ("b", b), ("b_minus_a", None)):
            def stat(idx, scores=scores, metric=metric):
                if scores is None:
                    return metric(b[idx], labels[idx]) - metric(a[idx], labels[idx])
                return metric(scores[idx], labels[idx])
            point = stat(index)
            boot = np.array([stat(d) for d in draws])
            boot = boot[~np.isnan(boot)]
            entry[model] = {"value": None if point != point else _round(point),
                            "low": _round(np.percentile(boot, 2.5)) if len(boot) else None,
                            "high": _round(np.percentile(boot, 97.5)) if len(boot) else None,
                            "n": int(n)}
        out[name] = entry
    return out
