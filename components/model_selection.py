"""Trainer: ship the simplest adequate model, and know what the naive predictor scores.

Rules of ML says start simple and add complexity only when it pays. So the Trainer trains the
configured model and a linear model on the same transformed features, and the configured one
is exported only when it is better beyond the eval split's sampling error; otherwise the
linear model is (same signatures, Transform graph, warmup and build record). Refusing to ship
anything because a simpler model is as good would be the wrong answer: the simpler model is
the answer. `model.select: configured` exports the configured model whatever the comparison
says, and the comparison is still recorded.

The sampling error is the deciding metric's at the eval split's size: Hanley and McNeil's for
AUC and the binomial one for accuracy, the error of the linear model's score, so the extra
model has to clear the noise a reader of one score would see, which leans toward the simpler
model, as intended. For RMSE and MAE it is a seeded bootstrap of the difference, resampled
paired: a regression label's heavy tail (a $50 tip) moves both scores together, and one
score's bootstrap spread is then mostly that tail, not what separates the models (taxi:
configured 1.08 against linear 1.49, ±0.43 for one score, ±0.10 paired). The margin is 1.96
errors (two-sided 95%).

The same errors (Wilson's bound for accuracy) give the Evaluator its default bar when no
`evaluation.threshold` is set: the
model must beat the naive predictor (AUC 0.5, the training split's majority class, or the
training mean) by the margin on the eval split (`naive_bar`, read by
components/evaluator.py).
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any

import numpy as np

Z = 1.96  # two-sided 95%
SELECT = ("simplest_adequate", "configured")


def standard_error(metric: str, value: float, predictions: np.ndarray,
                   labels: np.ndarray, seed: int) -> float:
    """The sampling error of `value` (the deciding metric of `predictions`) at this n: the
    model checks' one rule (components/sampling_error.py: metric_error)."""
    from tandem.components.sampling_error import metric_error

    return metric_error(metric, value, predictions, labels, seed=seed)


@dataclasses.dataclass(frozen=True)
class Selection:
    """The configured model against the linear one on the eval sample."""

    metric: str
    higher: bool
    configured: float
    linear: float | None  # None: the configured model is itself linear
    error: float  # the sampling error: of the linear model's score, or (rmse, mae) of the gain
    n: int
    select: str
    chosen: str  # "configured" or "linear"
    unit: float = 1.0  # regression: the label's standard deviation (scores are z-scored)
    # The Evaluator's value bar in its units (evaluation.threshold, else the naive bar), when
    # the linear model misses it and the configured one meets it: no adequate simpler model.
    missed_bar: float | None = None

    @property
    def margin(self) -> float:
        return Z * self.error

    @property
    def gain(self) -> float | None:
        if self.linear is None:
            return None
        return (self.configured - self.linear) if self.higher else (self.linear - self.configured)

    @property
    def better(self) -> bool:
        """The configured model beats the linear one beyond the sampling error."""
        gain = self.gain
        return gain is not None and math.isfinite(gain) and gain > self.margin

    @property
    def simpler_better(self) -> bool:
        """The linear model beats the configured one beyond the sampling error."""
        gain = self.gain
        return gain is not None and math.isfinite(gain) and -gain > self.margin

    @property
    def judged(self) -> bool:
        values = [self.configured] + ([self.linear] if self.linear is not None else [])
        return all(math.isfinite(v) for v in values) and math.isfinite(self.error)

    def _score(self, value: float) -> str:
        return f"{value * self.unit:.4f}"

    def line(self) -> str:
        """What the Trainer prints: which family was chosen, both scores, the margin, why."""
        if self.linear is None:
            return (f"configured: it is itself linear (no hidden layers, no crosses); "
                    f"{self.metric} {self._score(self.configured)} (n={self.n})")
        scores = (f"configured {self._score(self.configured)} vs linear "
                  f"{self._score(self.linear)} ± {self.margin * self.unit:.4f} {self.metric} "
                  f"(n={self.n})")
        if not self.judged:
            return f"{self.chosen}: {scores}: a score or its error is not finite"
        if self.better:
            why = "better beyond error"
        elif self.missed_bar is not None:
            why = (f"not better beyond error, but the linear model misses the bar "
                   f"{self.missed_bar:.4f} the configured one meets")
        elif self.select == "configured":
            why = ("not better beyond error; kept because model.select is configured"
                   + ("; the linear model is better beyond error" if self.simpler_better else ""))
        else:
            why = "not better beyond error"
        return f"{self.chosen}: {scores} ({why})"

    def record(self) -> dict[str, Any]:
        """The build record's `selection`."""
        def rounded(v):
            return None if v is None or not math.isfinite(v) else round(v * self.unit, 6)
        return {"chosen": self.chosen, "select": self.select, "metric": self.metric,
                "configured": rounded(self.configured), "linear": rounded(self.linear),
                "margin": rounded(self.margin), "n": self.n, "missed_bar": self.missed_bar,
                "summary": self.line()}


def select(metric: str, higher: bool, measure, labels: np.ndarray,
           configured: np.ndarray, linear: np.ndarray | None, mode: str, seed: int,
           unit: float = 1.0, bar: float | None = None) -> Selection:
    """Which model to export: the configured one when it is better than the linear one
    beyond the sampling error (or when `mode` is configured), else the linear one, as long
    as it is adequate: a linear model that misses the Evaluator's value bar (`bar`, in the
    Evaluator's units) while the configured one meets it is no simpler adequate model."""
    if mode not in SELECT:
        raise ValueError(f"model.select must be one of {', '.join(SELECT)}; got {mode!r}")
    ours = measure(configured, labels)
    if linear is None:
        return Selection(metric, higher, ours, None, 0.0, len(labels), mode, "configured", unit)
    simple = measure(linear, labels)
    if metric in ("rmse", "mae"):
        from tandem.components.sampling_error import paired_error

        error = paired_error(measure, linear, configured, labels, seed)
    else:
        error = standard_error(metric, simple, linear, labels, seed)
    picked = Selection(metric, higher, ours, simple, error, len(labels), mode, "configured", unit)
    if mode == "configured" or picked.better:
        return picked
    if not math.isfinite(simple) and math.isfinite(ours):
        return picked  # the linear model diverged: it is no alternative
    if bar is not None and math.isfinite(ours):
        def meets(value: float) -> bool:
            return value * unit >= bar if higher else value * unit <= bar
        if meets(ours) and not meets(simple):
            return dataclasses.replace(picked, missed_bar=bar)
    return dataclasses.replace(picked, chosen="linear")


def baseline_check(selection: Selection) -> dict[str, Any]:
    """Model 5 as a check: the comparison ran, and the exported model is the simplest
    adequate one. It fails (and stops the run) when it judged nothing; with model.select
    configured it fails without stopping the run when the linear model is better beyond
    error, since then a simpler model is better and was not shipped."""
    from tandem.components.model_checks import result

    details = {k: v for k, v in selection.record().items() if k != "summary"}
    if not selection.judged:
        return result("baseline", False, selection.line() + ": nothing judged", **details)
    passed = not (selection.chosen == "configured" and selection.simpler_better)
    return result("baseline", passed,
                  selection.line() + ("" if passed else ": a simpler model is better"),
                  gate=False, **details)


# ---- the naive predictor: the Evaluator's bar when no threshold is configured -------------

def naive_bar(metric: str, eval_labels: np.ndarray, train_labels: np.ndarray,
              classes: list[str] | None, seed: int) -> dict[str, Any]:
    """What the naive predictor scores on the eval split, its sampling error and the bar a
    model must clear (the naive score moved by Z errors to the good side), in the units the
    Evaluator reports: AUC 0.5; accuracy of always predicting the training split's most
    frequent class; RMSE or MAE of always predicting the training mean."""
    n = len(eval_labels)
    if n == 0 or len(train_labels) == 0:
        return {"metric": metric, "n": n, "bar": None,
                "summary": "no labelled eval or training examples: no naive bar"}
    labels = eval_labels.astype(np.float64)
    if metric in ("auc", "accuracy") and len(np.unique(eval_labels)) < 2:
        # One class in the eval split: AUC is undefined, and always predicting that class is
        # perfect, so no model could be shown better than the naive predictor.
        return {"metric": metric, "n": n, "bar": None,
                "summary": f"the eval split has one class (n={n}): there is nothing to judge "
                           "a model against"}
    if metric == "auc":
        labels = labels[labels >= 0]  # a class the model does not know has no place in AUC
        score, what, higher = 0.5, "a constant score (AUC 0.5)", True
        error = standard_error(metric, score, np.full(len(labels), 0.5), labels, seed)
        bar = score + Z * error
    elif metric == "accuracy":
        known = train_labels[train_labels >= 0].astype(np.int64)
        majority = int(np.argmax(np.bincount(known)))
        # Eval rows of a class the training split lacks stay in: the Evaluator counts them
        # (always wrong), so the naive score is over the same rows.
        score = float(np.mean(eval_labels.astype(np.int64) == majority))
        name = classes[majority] if classes and majority < len(classes) else str(majority)
        what, higher = f"the training split's most frequent class ({name!r})", True
        error = (max(score * (1 - score), 0.0) / n) ** 0.5
        # Wilson's upper bound, not score + Z * error: that collapses onto the score when
        # the eval split is (almost) all one class, and would bless the naive predictor.
        z2 = Z * Z
        bar = (score + z2 / (2 * n) + Z * math.sqrt(score * (1 - score) / n + z2 / (4 * n * n))) \
            / (1 + z2 / n)
    else:
        mean = float(np.mean(train_labels))
        guess = np.full(n, mean)
        score = float(np.sqrt(np.mean((guess - labels) ** 2)) if metric == "rmse"
                      else np.mean(np.abs(guess - labels)))
        what, higher = f"the training mean ({mean:.4g})", False
        error = standard_error(metric, score, guess, labels, seed)
        # The error comes from the eval rows' own spread, so the margin is Student's t with
        # n - 1 degrees of freedom (1.98 at n=140, 4.30 at n=3), not the normal Z.
        from scipy import stats

        bar = score - float(stats.t.ppf(0.975, n - 1)) * error if n > 1 else float("nan")
    if not math.isfinite(bar):
        bar = None
    elif bar >= 1.0 if higher else bar <= 0.0:  # the margin reaches a perfect score
        return {"metric": metric, "n": n, "bar": None,
                "summary": f"the eval split is too small (n={n}): the naive predictor's "
                           f"{metric} {score:.4f} ± {abs(bar - score):.4f} reaches "
                           f"{1 if higher else 0}, so no model could be shown better"}
    return {"metric": metric, "predictor": what, "score": round(score, 6),
            "error": round(error, 6) if math.isfinite(error) else None, "n": n,
            "bar": None if bar is None else round(bar, 6), "higher_is_better": higher,
            "summary": (f"naive predictor {what}: {metric} {score:.4f} on n={n} eval examples; "
                        + (f"bar {bar:.4f} (±{abs(bar - score):.4f})" if bar is not None
                           else "its error is unknown: no bar"))}

