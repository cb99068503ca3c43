"""Model checks: a metric's sampling error, the one rule every check and every selection uses.

A check or a selection that prefers one score to another must first know how far another
sample of the same n examples could move the score, or the difference between two scores;
these functions say it once, for the Trainer's checks (components/model_checks.py), the model
selection (components/model_selection.py) and the Evaluator's tolerance.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np


def auc(scores: np.ndarray, labels: np.ndarray) -> float:
    from tandem.components.shadow.compare import _auc

    return _auc(scores, labels)


def metric(deciding: str, problem: str) -> tuple[Callable[[np.ndarray, np.ndarray], float], bool]:
    """(metric(predictions, labels), higher is better) for the deciding metric, on the
    model's own outputs (for regression, in the label's transformed units)."""
    if deciding == "auc":
        return auc, True
    if deciding == "accuracy":
        def accuracy(p, y):
            if p.ndim == 2:
                return float((p.argmax(axis=1) == y.astype(np.int64)).mean())
            return float(((p > 0.5).astype(np.int64) == y.astype(np.int64)).mean())
        return accuracy, True
    if deciding == "rmse":
        return lambda p, y: float(np.sqrt(np.mean((p - y) ** 2))), False
    return lambda p, y: float(np.mean(np.abs(p - y))), False


def gain(value: float, reference: float, higher: bool) -> float:
    """How much better `value` is than `reference` (positive: better)."""
    return value - reference if higher else reference - value


def metric_error(name: str, value: float, predictions: np.ndarray, labels: np.ndarray,
                 seed: int = 0, resamples: int = 200) -> float:
    """The deciding metric's sampling error on these n examples, the one rule every check
    and the model selection use: Hanley and McNeil's for AUC and the binomial one for
    accuracy (components/slice_gate.py: standard_error, the one the slice gate judges with);
    for rmse and mae, the spread of the metric over seeded bootstrap resamples."""
    n = len(labels)
    if name in ("auc", "accuracy"):
        from tandem.components.slice_gate import standard_error

        mean_label = float(np.mean(labels)) if name == "auc" and n else None
        return standard_error(name, value, n, mean_label)
    if n < 2:
        return float("inf")
    loss = (predictions - labels) ** 2 if name == "rmse" else np.abs(predictions - labels)
    rng = np.random.default_rng(seed)
    means = np.array([loss[rng.integers(0, n, n)].mean() for _ in range(resamples)])
    values = np.sqrt(means) if name == "rmse" else means
    return float(np.std(values, ddof=1))


def paired_error(measure, a: np.ndarray, b: np.ndarray, labels: np.ndarray, seed: int = 0,
                 resamples: int = 200) -> float:
    """The sampling error of measure(a) - measure(b), two models' scores on the same n
    examples: the spread of the difference over seeded bootstrap resamples drawn once for
    both. One heavy-tailed label moves both scores together, so the paired spread is what
    another sample could do to their difference (on the taxi tips, 0.05 against 0.22 for one
    score alone). A resample a metric is undefined on (one class, for AUC) is left out."""
    n = len(labels)
    if n < 2:
        return float("inf")
    rng = np.random.default_rng(seed)
    diffs = []
    for _ in range(resamples):
        idx = rng.integers(0, n, n)
        diffs.append(measure(a[idx], labels[idx]) - measure(b[idx], labels[idx]))
    finite = np.asarray(diffs)[np.isfinite(diffs)]
    return float(np.std(finite, ddof=1)) if len(finite) > 1 else float("nan")


def metric_bounds(name: str, labels: np.ndarray) -> tuple[float, float]:
    """(chance, ceiling) of the metric on these labels: what a constant prediction scores (AUC
    0.5, the majority class's share, the error of the mean or median label) and a perfect
    one (1, or an error of 0)."""
    if name == "auc":
        return 0.5, 1.0
    if name == "accuracy":
        counts = np.bincount(labels.astype(np.int64)) if len(labels) else np.ones(1)
        return float(counts.max() / max(1, counts.sum())), 1.0
    if name == "rmse":
        return float(np.sqrt(np.mean((labels - np.mean(labels)) ** 2))), 0.0
    return float(np.mean(np.abs(labels - np.median(labels)))), 0.0
