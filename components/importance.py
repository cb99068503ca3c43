"""Model checks after training: permutation importance of the model inputs (Data 2).

Correlated inputs are shuffled together, and each group's drop is judged against the
shuffle noise measured in the same run, so no fixed threshold enters the verdict.
"""

from __future__ import annotations

import math
import time
from collections.abc import Collection
from typing import Any

import numpy as np

from tandem.components.model_checks import Sample, predict, result
from tandem.components.sampling_error import gain, metric_bounds, metric_error

# Rows per model call when scoring the shuffles (all of a group's repeats are stacked).
SHUFFLE_ROWS = 32768


def correlated_groups(features: dict[str, np.ndarray], threshold: float,
                      ordinal: Collection[str] = ()) -> list[list[str]]:
    """The model inputs as groups: inputs connected by |Pearson r| >= `threshold` on the eval
    sample fall in one group (single linkage, computed once: a~b and b~c put a, b and c
    together), every other input is a group of its own. Groups and their members are in
    name order.

    Floating-point (numeric) inputs enter as they are, and integer ones named in `ordinal`
    (bucket ids, which are ordered) too. Categorical vocabulary ids stay alone: an id is a
    rank by frequency, so r between two id columns says whether two frequency orders line up,
    not whether the columns carry the same information (a city and its country overlap
    whatever r their ids show)."""
    names = sorted(features)
    numeric = [n for n in names if features[n].ndim == 1 and len(features[n]) > 1 and (
        np.issubdtype(features[n].dtype, np.floating) or n in ordinal)]
    parent = {n: n for n in names}

    def root(n: str) -> str:
        while parent[n] != n:
            n = parent[n]
        return n

    if len(numeric) > 1:
        with np.errstate(invalid="ignore", divide="ignore"):
            r = np.corrcoef(np.stack([features[n].astype(np.float64) for n in numeric]))
        r = np.nan_to_num(r)  # a constant column correlates with nothing
        for i, j in np.argwhere(np.triu(np.abs(r) >= threshold, k=1)):
            a, b = sorted((root(numeric[i]), root(numeric[j])))
            parent[b] = a
    groups: dict[str, list[str]] = {}
    for n in names:
        groups.setdefault(root(n), []).append(n)
    return sorted(groups.values())


def shuffle_noise(drops: np.ndarray) -> float:
    """How far above the shuffles' mean the unshuffled metric may lie when a group carries
    nothing: then the eval sample's own arrangement of the group is one more draw among the
    shuffles, so its drop is centred at 0 with the shuffles' spread s, and the bar is the
    one-sided 97.5% quantile of Student's t (repeats - 1 degrees of freedom) times
    s * sqrt(1 + 1/repeats)."""
    from scipy import stats

    repeats = len(drops)
    if repeats < 2:
        raise ValueError("checks.importance_repeats must be at least 2: the shuffle noise is "
                         "measured from their spread")
    spread = float(np.std(drops, ddof=1))
    return float(stats.t.ppf(0.975, repeats - 1)) * spread * math.sqrt(1 + 1 / repeats)


def mean_error(drops: np.ndarray) -> float:
    """How far the mean drop over the shuffles may lie below the drop this sample gives on
    average: the one-sided 97.5% bound of Student's t times the standard error of the mean."""
    from scipy import stats

    repeats = len(drops)
    return float(stats.t.ppf(0.975, repeats - 1)) * float(np.std(drops, ddof=1)) / \
        math.sqrt(repeats)


def importance(model, sample: Sample, measure, higher: bool, repeats: int, seed: int,
               name: str, correlation: float = 0.8,
               ordinal: Collection[str] = (), material: float = 0.01) -> dict[str, Any]:
    """Data 2: permutation importance of the model inputs on the eval sample, by groups of
    correlated inputs, each judged against the shuffle noise measured in the same run.

    Inputs connected at |r| >= `correlation` (`correlated_groups`) are shuffled together,
    their columns by one permutation: shuffled alone, one of two near copies leaves the other
    carrying what they share, and each looks useless. A group's drop is the mean fall of the
    deciding metric over `repeats` shuffles, and each input is judged by its group's drop:

    - helps: the drop is above the group's shuffle noise (`shuffle_noise`). A group that
      carries nothing about the label on the eval sample (a pure-noise input the model
      learned spurious weights for) makes the unshuffled metric just one more shuffle, so its
      drop lies within that noise 97.5% of the time however large its weights are; a weak
      real input moves the metric a little, consistently, and clears it. No fixed threshold
      enters: a threshold on the drop would measure the sample size, not the input;
    - cannot tell: not shown to help, on a sample that cannot show a drop. With n eval
      examples and se the metric's sampling error at n (`metric_error`), that is when the
      metric's 95% interval, value ± 2 se, reaches its ceiling (AUC or accuracy 1, an error
      of 0) or chance (`metric_bounds`). At the ceiling the sample cannot tell the model from
      a perfect one: it has almost no mistakes left, so an input that matters can show no
      drop because the others still separate these few examples (for AUC with balanced
      classes this holds from about 0.979 at n=193, 0.997 at n=1,500 and 0.999 at n=4,000;
      for accuracy, with about four wrong examples or fewer). At chance even the largest
      drop, to chance, would be inside the sampling error. It is also when the shuffles
      cannot rule out a material drop: the mean drop's 97.5% upper bound (`mean_error`:
      Student's t times the standard error of the mean over the repeats) is at least
      `material` of the model's lift over chance (1%: an input worth a hundredth of what the
      model gains over the naive predictor). On heavy-tailed regression labels (taxi tips)
      the shuffles scatter that widely, and a real input must not be called useless for it;
    - does not help: shown immaterial: not above the noise, and the mean drop's upper bound
      below the material share of the lift.

    `status` is "failed" when an input does not help, else "cannot tell" when one cannot be
    told, else "passed"; `passed` is status != "failed": a sample too small to judge is no
    evidence against the model, and the summary says what it could not tell and why."""
    start = time.perf_counter()
    rng = np.random.default_rng(seed)
    n = len(sample.labels)
    out = predict(model, sample.features)
    base = measure(out, sample.labels)
    se = metric_error(name, base, out, sample.labels)
    chance, ceiling = metric_bounds(name, sample.labels)
    # Why this sample can show no drop, when it cannot (the 'cannot tell' rule above).
    blind = ("reaches the ceiling" if 2 * se >= gain(ceiling, base, higher) else
             "reaches chance" if 2 * se >= gain(base, chance, higher) else None)
    # The smallest drop that matters: a share of what the model gains over chance.
    bar = material * max(gain(base, chance, higher), 0.0)
    groups = []
    for members in correlated_groups(sample.features, correlation, ordinal):
        # A group's shuffles stacked into inputs of up to SHUFFLE_ROWS rows, one model call
        # each, instead of one call per shuffle (64 inputs: 1,280 calls of a few hundred rows).
        orders = [rng.permutation(n) for _ in range(repeats)]
        drops = []
        per_call = max(1, SHUFFLE_ROWS // max(n, 1))
        for first in range(0, repeats, per_call):
            chunk = orders[first:first + per_call]
            stacked = {k: np.concatenate([v[o] for o in chunk]) if k in members
                       else np.concatenate([v] * len(chunk))
                       for k, v in sample.features.items()}
            outs = predict(model, stacked, batch=SHUFFLE_ROWS)
            drops += [gain(base, measure(outs[i * n:(i + 1) * n], sample.labels), higher)
                      for i in range(len(chunk))]
        drop, noise = float(np.mean(drops)), shuffle_noise(np.array(drops))
        upper = drop + mean_error(np.array(drops))
        verdict = ("helps" if drop > noise and drop > 0 else
                   "cannot tell" if blind or upper >= bar else "does not help")
        groups.append({"features": members, "drop": round(drop, 6),
                       "std": round(float(np.std(drops, ddof=1)), 6),
                       "noise": round(noise, 6), "upper": round(upper, 6),
                       "verdict": verdict})
    rows = {m: {**{k: g[k] for k in ("drop", "std", "noise", "upper", "verdict")},
                "group": "+".join(g["features"])} for g in groups for m in g["features"]}
    useless = sorted(m for m, r in rows.items() if r["verdict"] == "does not help")
    unknown = sorted(m for m, r in rows.items() if r["verdict"] == "cannot tell")
    status = "failed" if useless else "cannot tell" if unknown else "passed"

    def listed(verdict: str) -> str:
        return ", ".join(f"{'+'.join(g['features'])} ({g['drop']:+.4f} vs noise "
                         f"{g['noise']:.4f})" if verdict != "helps"
                         else "+".join(g["features"]) for g in groups if g["verdict"] == verdict)

    at = f"n={n}, {name} {base:.4f} ± {2 * se:.4f}, {repeats} shuffles per group"
    why = (f"the metric's 95% interval {blind}, so no drop could show" if blind else
           f"the mean drop's upper bound reaches {bar:.4f} ({material:.0%} of the lift over "
           "chance), so a material drop could hide in the shuffles' scatter")
    if status == "failed":
        summary = (f"{len(useless)} of {len(rows)} features do not help (drop within the "
                   f"shuffle noise, its upper bound under {bar:.4f}: {material:.0%} of the "
                   f"lift over chance; {at}): {listed('does not help')}")
        if unknown:
            summary += f"; cannot tell: {listed('cannot tell')}"
    elif status == "cannot tell":
        helping = listed("helps")
        summary = (f"cannot tell ({at}): {why} for {len(unknown)} of {len(rows)} features: "
                   f"{listed('cannot tell')}" + (f"; help: {helping}" if helping else ""))
    else:
        weakest = min(groups, key=lambda g: g["drop"] - g["noise"])
        summary = (f"all {len(rows)} features help beyond the shuffle noise (weakest "
                   f"{'+'.join(weakest['features'])}: drop {weakest['drop']:.4f}, noise "
                   f"{weakest['noise']:.4f}; {at})")
    joint = [g["features"] for g in groups if len(g["features"]) > 1]
    if joint:
        summary += (f"; judged together (|r| >= {correlation:g}): "
                    + ", ".join("+".join(g) for g in joint))
    return result("importance", status != "failed", summary, status=status,
                  base=round(base, 6), metric_se=round(se, 6), examples=n, groups=groups,
                  features=rows, not_beneficial=useless, cannot_tell=unknown,
                  repeats=repeats, correlation=correlation, material=round(bar, 6),
                  seconds=round(time.perf_counter() - start, 2))
