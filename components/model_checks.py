"""Checks the Trainer runs on every model it trains, recorded in the build record (`checks`).

They are the automated evidence behind `tandem score` (the ML Test Score):

    model_spec        (Infra 2)  the model spec learns: a fresh model overfits one batch
    tuning            (Model 3)  a seeded search around the configured hyperparameters; the
                                 full training uses the best trial if it wins beyond the
                                 sampling error, else the configured one; fails when no trial
                                 beats chance beyond that error (nothing to tune)
    numerics          (Mon 5)    losses, weights and outputs are finite (NaN/Inf stop training)
    reproducibility   (Infra 1)  two trainings of at least 100 steps from the same seed and
                                 inputs give the same predictions on the eval split, within a
                                 tolerance
    importance        (Data 2)   permutation importance of the model inputs on the eval split,
                                 strongly correlated ones shuffled together, each judged
                                 against the shuffle noise measured in the same run; features
                                 that do not help are listed, or "cannot tell" when the sample
                                 could not show it
    baseline          (Model 5)  the configured model against a linear model on the same
                                 transformed features; the simpler one is exported unless the
                                 configured one is better beyond the sampling error
                                 (components/model_selection.py)
    export_skew       (Data 7)   the exported serving signature (raw tf.Example bytes) and the
                                 training input path give the same predictions
    feature_code      (Data 7)   unit tests of the fitted feature code: vocabulary round trips,
                                 unseen values, monotone numeric scaling
    privacy           (Data 5)   private features are not model inputs and do not move a
                                 prediction when changed
    feature_rules     (Data 4)   every model input is declared in the schema with a domain, a
                                 presence rule and a production lifecycle stage
    explain           (Infra 5)  one eval example traced raw -> transformed -> score reproduces
                                 the served score

A check that gates (`gate: true`) and fails stops the run at the ModelCheckGate after the
Trainer, so the model is never evaluated or pushed, and its record (with the reason) stays in
the Trainer's output for `tandem model inspect` and `tandem score`.
"""

from __future__ import annotations

import dataclasses
import math
import time
from collections.abc import Callable, Collection
from typing import Any

import numpy as np

from tandem.schemas.contracts import SERVING_DEFAULT, TRANSFORM_SIGNATURE, served_output
from tandem.schemas.files import tfrecord_compression

# Which checks stop the run when they fail.
GATES = ("model_spec", "numerics", "baseline", "export_skew", "feature_code", "privacy",
         "feature_rules")


@dataclasses.dataclass
class Sample:
    """Eval examples the checks share: transformed model inputs, labels and the raw bytes."""

    features: dict[str, np.ndarray]
    labels: np.ndarray
    raw: list[bytes]


class NumericalError(RuntimeError):
    """A loss went NaN or infinite during training."""


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


def predict(model, features: dict[str, np.ndarray], batch: int = 4096) -> np.ndarray:
    out = [np.asarray(model(({k: v[i:i + batch] for k, v in features.items()}), training=False))
           for i in range(0, len(next(iter(features.values()))), batch)]
    return np.concatenate(out) if out else np.zeros(0)


def take(dataset, n: int) -> tuple[dict[str, np.ndarray], np.ndarray]:
    """The first n (features, label) rows of a batched dataset, as numpy."""
    features: dict[str, list[np.ndarray]] = {}
    labels: list[np.ndarray] = []
    count = 0
    for x, y in dataset:
        for k, v in x.items():
            features.setdefault(k, []).append(v.numpy())
        labels.append(y.numpy())
        count += len(labels[-1])
        if count >= n:
            break
    if not labels:
        return {}, np.zeros(0)
    return ({k: np.concatenate(v)[:n] for k, v in features.items()},
            np.concatenate(labels)[:n])


def raw_records(files: list[str], n: int) -> list[bytes]:
    """The first n serialized records of (GZIP) TFRecord files, in file-name order."""
    import tensorflow as tf

    out: list[bytes] = []
    for pattern in files:
        for path in sorted(tf.io.gfile.glob(pattern)):
            ds = tf.data.TFRecordDataset(path, compression_type=tfrecord_compression(path))
            out.extend(r.numpy() for r in ds.take(n - len(out)))
            if len(out) >= n:
                return out
    return out


class FiniteGuard:
    """A Keras callback: every batch's loss must be finite; the first that is not stops
    training and is recorded (the run then fails at the gate)."""

    def __new__(cls):
        import tensorflow as tf

        class _Guard(tf.keras.callbacks.Callback):
            def __init__(self):
                super().__init__()
                self.batches = 0
                self.bad: str | None = None

            def on_train_batch_end(self, batch, logs=None):
                self.batches += 1
                loss = (logs or {}).get("loss")
                if loss is not None and not math.isfinite(float(loss)):
                    self.bad = f"loss {float(loss)} at batch {self.batches}"
                    self.model.stop_training = True

        return _Guard()


def result(name: str, passed: bool, summary: str, gate: bool | None = None,
           **details: Any) -> dict[str, Any]:
    """A check's record; `gate` (default: the name is in GATES) says whether failing it
    stops the run."""
    return {"check": name, "passed": bool(passed),
            "gate": name in GATES if gate is None else bool(gate), "summary": summary,
            **details}


# ---- sampling error ----------------------------------------------------------------------

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


# ---- before training ---------------------------------------------------------------------

def model_spec(build: Callable[[dict], Any], hp: dict, train, steps: int) -> dict[str, Any]:
    """Infra 2: the spec builds, gives finite outputs of the right shape, and can learn:
    `steps` updates on one fixed batch must cut its loss by at least a quarter (a spec whose
    gradients do not flow, or whose output is cut off from its inputs, cannot)."""
    import tensorflow as tf

    start = time.perf_counter()
    x, y = next(iter(train))
    model = build(hp)
    out = np.asarray(model(x, training=False))
    shape_ok = out.shape[0] == int(tf.shape(y)[0]) and np.isfinite(out).all()
    first = float(model.evaluate(x, y, verbose=0, return_dict=True)["loss"])
    model.optimizer.learning_rate.assign(max(hp["learning_rate"], 0.02))
    for _ in range(steps):
        model.train_on_batch(x, y)
    last = float(model.evaluate(x, y, verbose=0, return_dict=True)["loss"])
    passed = bool(shape_ok and math.isfinite(last) and last <= 0.75 * first)
    return result("model_spec", passed,
                  f"one batch of {len(out)}: loss {first:.4f} -> {last:.4f} after {steps} steps"
                  + ("" if shape_ok else "; outputs not finite or of the wrong shape"),
                  loss_before=round(first, 6), loss_after=round(last, 6), steps=steps,
                  seconds=round(time.perf_counter() - start, 2))


def trial_grid(hp: dict, trials: int, seed: int) -> list[dict]:
    """The configured hyperparameters first, then seeded draws around them: learning rate
    x{1/3, 1, 3}; hidden layers x{1/2, 1, 2}, or for a model without them (wide only), one
    hidden layer of 16 or 32, so every run asks whether a deep part helps."""
    widths = ([[max(4, int(u * f)) for u in hp["hidden_units"]] for f in (1.0, 0.5, 2.0)]
              if hp["hidden_units"] else [[], [16], [32]])
    grid = [{"learning_rate": round(hp["learning_rate"] * lr, 6), "hidden_units": units}
            for lr in (1.0, 1 / 3, 3.0) for units in widths]
    grid = [g for g in grid if g != {"learning_rate": round(hp["learning_rate"], 6),
                                     "hidden_units": list(hp["hidden_units"])}]
    rng = np.random.default_rng(seed)
    picks = rng.permutation(len(grid))[: max(0, trials - 1)]
    return [dict(hp)] + [{**hp, **grid[i]} for i in sorted(picks)]


# A trial trains at most this many passes over the training data: on a few hundred rows
# `tuning_steps` would be dozens of them, and the trial that won would be the one that overfit
# in a way the eval sample's noise happened to reward.
TRIAL_PASSES = 3


def tuning(build: Callable[[dict], Any], hp: dict, train, sample: Sample, measure,
           higher: bool, trials: int, steps: int, seed: int, name: str,
           epoch_steps: int) -> tuple[dict, dict[str, Any]]:
    """Model 3: train each trial from the same seed for `steps` steps, at most TRIAL_PASSES
    passes over the training data (`epoch_steps` batches each), and score it on the eval
    sample.

    A trial replaces the configured hyperparameters only when it beats them by more than
    two sampling errors of the metric at the eval sample's n (`metric_error`: Hanley and
    McNeil's for AUC, the binomial one for accuracy): a smaller lead is what another sample
    of n examples could reverse. When every trial is within that margin of the configured
    one, they tie, and the record says so.

    The check fails when the search found nothing to tune: no trial gave a finite metric,
    or none beats chance (`metric_bounds`: AUC 0.5, the majority class, the error of the
    mean label) by more than the same margin. Then every setting tried is as good as a
    constant, and keeping the configured one says nothing about whether it was tuned."""
    import tensorflow as tf

    start = time.perf_counter()
    steps = max(1, min(steps, TRIAL_PASSES * epoch_steps))
    rows, outs = [], []
    for trial in trial_grid(hp, trials, seed):
        tf.keras.utils.set_random_seed(seed)
        model = build(trial)
        model.fit(train, steps_per_epoch=steps, epochs=1, verbose=0)
        outs.append(predict(model, sample.features))
        value = measure(outs[-1], sample.labels)
        rows.append({"learning_rate": trial["learning_rate"],
                     "hidden_units": list(trial["hidden_units"]),
                     "value": round(value, 6) if math.isfinite(value) else None})
    n = len(sample.labels)
    configured = rows[0]
    scored = [r for r in rows if r["value"] is not None]
    best = (max if higher else min)(scored, key=lambda r: r["value"]) if scored else configured
    # The error at n of the configured trial's score, or of the best one's if it diverged.
    judged = configured if configured["value"] is not None else best
    se = (metric_error(name, judged["value"], outs[rows.index(judged)], sample.labels)
          if judged["value"] is not None else float("nan"))
    margin = 2 * se
    chance, _ = metric_bounds(name, sample.labels)
    of = f"{len(rows)} trials of {steps} steps"
    found = bool(scored) and gain(best["value"], chance, higher) > margin
    if not scored:
        winner = configured
        summary = f"{of}: no trial gave a finite {name} (n={n}): the search found nothing"
    elif not found:
        winner = configured
        summary = (f"{of}: no trial beats chance ({name} {chance:.4f}) by more than "
                   f"±{margin:.4f} (n={n}; best learning_rate {best['learning_rate']:g}, "
                   f"hidden_units {best['hidden_units']}, {best['value']:.4f}): the search "
                   "found nothing to tune; configured kept")
    elif configured["value"] is None or gain(best["value"], configured["value"], higher) > margin:
        winner = best
        summary = (f"{of}; best learning_rate {best['learning_rate']:g}, hidden_units "
                   f"{best['hidden_units']} ({best['value']}) vs configured "
                   f"({configured['value']}), beyond ±{margin:.4f} (n={n})")
    else:
        winner = configured
        spread = max(abs(r["value"] - configured["value"]) for r in scored)
        summary = (f"all {of} tie within ±{margin:.4f} of the configured {name} "
                   f"{configured['value']:.4f} (n={n}): configured kept" if spread <= margin
                   else f"{of}: none beats the configured {name} {configured['value']:.4f} "
                   f"by more than ±{margin:.4f} (n={n}; best learning_rate "
                   f"{best['learning_rate']:g}, hidden_units {best['hidden_units']}, "
                   f"{best['value']:.4f}): configured kept")
    chosen = {"learning_rate": winner["learning_rate"], "hidden_units": winner["hidden_units"]}
    return {**hp, **chosen}, result(
        "tuning", found and len(rows) >= 2, summary,
        trials=rows, steps=steps, epoch_steps=epoch_steps, chosen=chosen,
        kept_configured=winner is configured, examples=n, chance=round(chance, 6),
        metric_se=round(se, 6) if math.isfinite(se) else None,
        seconds=round(time.perf_counter() - start, 2))


# ---- after training ----------------------------------------------------------------------

def numerics(model, guard, sample: Sample, problem: str) -> dict[str, Any]:
    """Monitoring 5: every batch's loss was finite, and so are the weights and the outputs
    (which for classification are probabilities in [0, 1])."""
    weights_ok = all(np.isfinite(w).all() for w in model.get_weights())
    out = predict(model, sample.features)
    outputs_ok = bool(np.isfinite(out).all())
    if outputs_ok and problem != "regression":
        outputs_ok = bool(((out >= 0) & (out <= 1)).all())
    bad = [what for what, ok in (("loss", guard.bad is None), ("weights", weights_ok),
                                  ("outputs", outputs_ok)) if not ok]
    summary = (f"losses of {guard.batches} batches, {len(model.get_weights())} weight tensors "
               f"and {len(out)} outputs finite" if not bad else
               f"not finite: {', '.join(bad)}" + (f" ({guard.bad})" if guard.bad else ""))
    return result("numerics", not bad, summary, batches=guard.batches, failed=bad)


# One epoch counts for at most this many steps: past it, a longer run costs minutes and tells
# little more about whether two trainings agree.
REPRODUCIBILITY_MAX_STEPS = 500


def reproducibility(build: Callable[[dict], Any], hp: dict, make_train, sample: Sample,
                    seed: int, tolerance: float, min_steps: int,
                    epoch_steps: int) -> dict[str, Any]:
    """Infra 1: two trainings from the same seed and inputs, apart from the main training,
    predict the same on the eval sample. Each trains `min_steps`, or one pass over the
    training data (`epoch_steps` batches, counted at most REPRODUCIBILITY_MAX_STEPS) if that
    is more: on small data that is many passes (the training dataset repeats), so the
    reshuffles between them are covered too."""
    import tensorflow as tf

    start = time.perf_counter()
    steps = max(min_steps, min(epoch_steps, REPRODUCIBILITY_MAX_STEPS))

    def train_once() -> np.ndarray:
        tf.keras.utils.set_random_seed(seed)
        train = make_train()
        model = build(hp)
        model.fit(train, steps_per_epoch=steps, epochs=1, verbose=0)
        return predict(model, sample.features)

    a, b = train_once(), train_once()
    diff = float(np.max(np.abs(a - b))) if len(a) else 0.0
    passes = steps / max(1, epoch_steps)
    return result("reproducibility", diff <= tolerance,
                  f"two trainings of {steps} steps ({passes:.3g} passes over the training "
                  f"data) from seed {seed}: max |prediction difference| {diff:.2e} on "
                  f"n={len(a)} eval examples (tolerance {tolerance:g})",
                  steps=steps, epoch_steps=epoch_steps, max_abs_diff=diff,
                  tolerance=tolerance, examples=len(a),
                  seconds=round(time.perf_counter() - start, 2))


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
        drops = []
        for _ in range(repeats):
            order = rng.permutation(n)
            shuffled = {**sample.features, **{m: sample.features[m][order] for m in members}}
            drops.append(gain(base, measure(predict(model, shuffled), sample.labels), higher))
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


# ---- on the exported SavedModel ----------------------------------------------------------

def export_skew(loaded, model, transform_output, raw: list[bytes], files: list[str],
                problem: str, scale: tuple[float, float], tolerance: float) -> dict[str, Any]:
    """Data 7: the same raw examples through the exported serving signature (tf.Example
    bytes, parsed by the SavedModel) and through the training input path (tfx_bsl's decoder
    and tensor adapter, as the Trainer's dataset reads them), then the same Transform graph
    and model: the predictions must agree."""
    import tensorflow as tf
    from tfx_bsl.coders import example_coder
    from tfx_bsl.public import tfxio

    start = time.perf_counter()
    schema = transform_output.raw_metadata.schema
    batch = example_coder.ExamplesToRecordBatchDecoder(schema.SerializeToString()).DecodeBatch(raw)
    adapter = tfxio.TensorAdapter(tfxio.TensorAdapterConfig(
        batch.schema, tfxio.TFExampleRecord(file_pattern=files, schema=schema,
                                            validate=False).TensorRepresentations()))
    transformed = transform_output.transform_features_layer()(adapter.ToBatchTensors(batch))
    names = list(model.input.keys()) if isinstance(model.input, dict) else []
    training = np.asarray(model({k: transformed[k] for k in names}, training=False))
    if problem == "regression":
        training = training * scale[1] + scale[0]
    served = served_output(loaded.signatures[SERVING_DEFAULT](examples=tf.constant(raw)),
                           problem)
    if served.ndim == 2 and training.ndim == 1:  # binary classify outputs: P(class 1)
        served = served[:, -1]
    diff = float(np.max(np.abs(served - training))) if len(raw) else 0.0
    return result("export_skew", diff <= tolerance,
                  f"{len(raw)} eval examples: serving signature vs training input path, max "
                  f"|difference| {diff:.2e} (tolerance {tolerance:g})",
                  examples=len(raw), max_abs_diff=diff, tolerance=tolerance,
                  seconds=round(time.perf_counter() - start, 2))


def _set(example, name: str, value, dtype: str) -> None:
    feature = example.features.feature[name]
    feature.Clear()
    if dtype == "BYTES":
        feature.bytes_list.value.append(value if isinstance(value, bytes) else str(value).encode())
    elif dtype == "INT":
        feature.int64_list.value.append(int(value))
    else:
        feature.float_list.value.append(float(value))


def _value(example, name: str):
    feature = example.features.feature[name]
    kind = feature.WhichOneof("kind")
    values = getattr(feature, kind).value if kind else []
    return values[0] if len(values) else None


def feature_code(loaded, transform_output, plan: dict, base: bytes,
                 max_entries: int = 25) -> dict[str, Any]:
    """Data 7: unit tests of the fitted feature code, through the exported
    transform_features signature. Categorical: vocabulary entries map to their line in the
    vocabulary file, and an unseen value to an out-of-vocabulary bucket. Numeric: scaling is
    finite and increasing. Bucketized: ids are in range and do not decrease."""
    import tensorflow as tf
    from tensorflow.core.example import example_pb2

    from tandem.components.features import BUCKETIZE, CATEGORICAL, NUMERIC, model_features

    start = time.perf_counter()
    transform = loaded.signatures[TRANSFORM_SIGNATURE]
    template = example_pb2.Example.FromString(base)

    def run(name: str, values: list, dtype: str) -> np.ndarray:
        batch = []
        for v in values:
            e = example_pb2.Example()
            e.CopyFrom(template)
            _set(e, name, v, dtype)
            batch.append(e.SerializeToString())
        return np.asarray(transform(examples=tf.constant(batch))[name]).reshape(-1)

    failures: list[str] = []
    tests = 0
    for name, spec in model_features(plan).items():
        dtype = spec["dtype"]
        if spec["kind"] == CATEGORICAL:
            path = transform_output.vocabulary_file_by_name(name)
            with tf.io.gfile.GFile(path) as f:
                vocab = [line.rstrip("\n") for line in f]
            picks = list(range(min(max_entries, len(vocab))))
            ids = run(name, [vocab[i] for i in picks], dtype)
            tests += 1
            if list(ids) != picks:
                failures.append(f"{name}: vocabulary entries map to {list(ids)[:5]}..., not to "
                                "their lines")
            unseen = "__tandem_unseen__" if dtype == "BYTES" else \
                max([int(float(v)) for v in vocab if v.lstrip("-").isdigit()] or [0]) + 10_007
            (oov,) = run(name, [unseen], dtype)
            tests += 1
            size = len(vocab)
            if not size <= oov < size + spec["num_oov_buckets"]:
                failures.append(f"{name}: an unseen value maps to {oov}, outside the "
                                f"out-of-vocabulary buckets [{size}, "
                                f"{size + spec['num_oov_buckets']})")
        elif spec["kind"] in (NUMERIC, BUCKETIZE):
            v = _value(template, name)
            v = float(v) if v is not None else 0.0
            values = [v - 10, v, v + 10] if dtype == "INT" else [v - 10.0, v, v + 10.0]
            out = run(name, values, dtype)
            tests += 1
            if not np.isfinite(out).all():
                failures.append(f"{name}: transformed values {list(out)} are not finite")
            elif spec["kind"] == NUMERIC and not (out[0] < out[1] < out[2]):
                failures.append(f"{name}: scaling is not increasing ({list(out)})")
            elif spec["kind"] == BUCKETIZE and not (
                    out[0] <= out[1] <= out[2] and out.min() >= 0
                    and out.max() <= spec["num_buckets"]):
                failures.append(f"{name}: bucket ids {list(out)} out of order or range")
    return result("feature_code", not failures,
                  f"{tests} feature code tests on {len(model_features(plan))} features" +
                  (f"; {len(failures)} failed: {'; '.join(failures)}" if failures else ", all pass"),
                  tests=tests, failures=failures, seconds=round(time.perf_counter() - start, 2))


def privacy(loaded, plan: dict, raw: list[bytes], private: list[str], schema_names: set[str],
            problem: str) -> dict[str, Any] | None:
    """Data 5: private features (config `checks.private_features`) are not model inputs, and
    changing them changes no prediction of the exported model."""
    import tensorflow as tf
    from tensorflow.core.example import example_pb2

    from tandem.components.features import model_features

    if not private:
        return None  # nothing declared private: Data 5 stays without automated evidence
    inputs = set(model_features(plan))
    unknown = sorted(set(private) - schema_names)
    used = sorted(set(private) & inputs)
    serve = loaded.signatures[SERVING_DEFAULT]
    before = served_output(serve(examples=tf.constant(raw)), problem)
    changed = []
    for e in raw:
        ex = example_pb2.Example.FromString(e)
        for name in private:
            if name in ex.features.feature:
                spec = plan["features"].get(name, {"dtype": "BYTES"})
                old = _value(ex, name)
                new = b"__tandem_redacted__" if spec["dtype"] == "BYTES" else \
                    (old or 0) + 12_345
                _set(ex, name, new, spec["dtype"])
        changed.append(ex.SerializeToString())
    after = served_output(serve(examples=tf.constant(changed)), problem)
    moved = float(np.max(np.abs(after - before))) if len(raw) else 0.0
    problems = ([f"not in the schema: {', '.join(unknown)}"] if unknown else []) + \
        ([f"model inputs: {', '.join(used)}"] if used else []) + \
        ([f"changing them moves predictions by up to {moved:.2e}"] if moved > 0 else [])
    return result("privacy", not problems,
                  f"private features {', '.join(private)} (changed in n={len(raw)} eval "
                  "examples): " + ("; ".join(problems) if problems else
                                   "not model inputs, no prediction moved"),
                  features=list(private), model_inputs=used, max_abs_change=moved,
                  examples=len(raw))


ALLOWED_STAGES = ("UNKNOWN_STAGE", "BETA", "PRODUCTION")


def feature_rules(schema, plan: dict) -> dict[str, Any]:
    """Data 4: every model input is declared in the schema with a presence rule, a domain
    (values or range), is served (not excluded from the SERVING environment) and is at a
    production lifecycle stage (unset, BETA or PRODUCTION)."""
    from tensorflow_metadata.proto.v0 import schema_pb2

    from tandem.components.features import model_features

    by_name = {f.name: f for f in schema.feature}
    failures = []
    for name in model_features(plan):
        f = by_name.get(name)
        if f is None:
            failures.append(f"{name}: not in the schema")
            continue
        stage = schema_pb2.LifecycleStage.Name(f.lifecycle_stage)
        if stage not in ALLOWED_STAGES:
            failures.append(f"{name}: lifecycle stage {stage}")
        if not f.HasField("presence"):
            failures.append(f"{name}: no presence rule")
        if f.WhichOneof("domain_info") is None:
            failures.append(f"{name}: no domain (values or range)")
        if "SERVING" in f.not_in_environment:
            failures.append(f"{name}: not in the SERVING environment, yet a model input")
    n = len(model_features(plan))
    return result("feature_rules", not failures,
                  f"{n} model inputs declared with presence, domain, SERVING and lifecycle" +
                  (f"; {len(failures)} problems: {'; '.join(failures)}" if failures else ""),
                  failures=failures)


def explained(serving_dir: str, raw: bytes, trace: Callable[[bytes], dict] | None = None,
              tolerance: float = 1e-5) -> dict[str, Any]:
    """Infra 5: `tandem explain` on one eval example: the score rebuilt from the transformed
    features equals the served score."""
    from tandem.components.explain import explain

    trace = trace(raw) if trace else explain(serving_dir, raw)
    diff = abs(trace["score"] - trace["served"])
    return result("explain", diff <= tolerance,
                  f"one eval example traced raw ({len(trace['raw'])} features) -> transformed "
                  f"({len(trace['transformed'])}) -> score {trace['score']:.6f}; served "
                  f"{trace['served']:.6f} (|difference| {diff:.1e}, tolerance {tolerance:g})",
                  max_abs_diff=diff, tolerance=tolerance, examples=1)
