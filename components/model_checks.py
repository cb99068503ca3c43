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
    feature_rules     (Data 4)   every model input is declared in the schema with a domain (or,
                                 for a string read through a vocabulary with an OOV bucket, an
                                 open one), a presence rule and a production lifecycle stage
    explain           (Infra 5)  one eval example traced raw -> transformed -> score reproduces
                                 the served score

A check that gates (`gate: true`) and fails stops the run at the ModelCheckGate after the
Trainer, so the model is never evaluated or pushed, and its record (with the reason) stays in
the Trainer's output for `tandem model inspect` and `tandem score`.

This module holds the checks' record, the sample they share and the checks run while
training; importance (components/importance.py), the checks on the export
(components/exported_model_checks.py) and the sampling error every verdict rests on
(components/sampling_error.py) live beside it.
"""

from __future__ import annotations

import dataclasses
import math
import time
from collections.abc import Callable
from typing import Any

import numpy as np

from tandem.components.sampling_error import gain, metric_bounds, metric_error
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


def predict(model, features: dict[str, np.ndarray], batch: int = 4096) -> np.ndarray:
    out = [np.asarray(model(({k: v[i:i + batch] for k, v in features.items()}), training=False))
           for i in range(0, len(next(iter(features.values()))), batch)]
    return np.concatenate(out) if out else np.zeros(0)


def done_with(build, model) -> None:
    """Hand a model that a check no longer needs back to `build`, when `build` reuses models
    (components/trainer_model.py, `Models`): the next training of the same architecture then
    starts from its freshly seeded weights in this model, whose graph is already traced."""
    release = getattr(build, "release", None)
    if release is not None:
        release(model)


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
    done_with(build, model)
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
        done_with(build, model)
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
        out = predict(model, sample.features)
        done_with(build, model)
        return out

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
