"""Shadow replay report: what the replay job (components/shadow/replay.py) measured, built from
its replayed chunks once the job has them all, and written as report.json, run.json,
divergent.tfrecord.gz and, given a renderer, report.html.

report.json holds only what the logs, the models and the seed decide, so it is byte-identical
for the same inputs; the timings, which change from run to run, go to run.json.
"""

from __future__ import annotations

import contextlib
import json
import os
from collections.abc import Callable
from typing import Any

import numpy as np

from tandem.components.shadow.compare import (
    CLASSIFICATION,
    REGRESSION,
    Thresholds,
    compare,
    multiclass,
    quality,
    verdict,
)
from tandem.schemas.exit_status import BadInputError

REPORT = "report.json"
HTML = "report.html"
RUN = "run.json"  # what varies between runs of the same replay: timings
DIVERGENT = "divergent.tfrecord.gz"

# Input counters the job's stages report, in report.json's `input`.
INPUT_COUNTS = ("files", "records", "torn", "corrupt", "unreadable", "shadow_records",
                "failed_requests", "rejected_requests", "duplicate_examples")

# Draws report.html from the report: (report, a=None, b=None, run=None, divergent=None) ->
# the page's HTML. The caller gives it (reports/replay.py's, by way of pipeline/): the job
# measures, it does not know how its page is drawn.
Render = Callable[..., str]

# A section a variant of the replay adds to the report, from the replayed chunks: (its name in
# report.json, its content, its checks for the gate). The replay with candidate features adds
# its attribution this way (components/shadow/features_replay.py).
Section = Callable[[list[dict]], tuple[str, dict, list[dict]]]


class UnscorableLabelsError(BadInputError):
    """Labels given to the replay that its model cannot be scored on (exit status 2)."""


def _merge(chunks: list[dict]) -> dict[str, Any]:
    """The replayed chunks as arrays in request-id order (so the report does not depend on
    the order chunks arrived in)."""
    ids = [i for c in chunks for i in c["ids"]]
    order = np.argsort(np.array(ids, dtype=object), kind="stable") if ids else np.array([], int)

    def stacked(name: str) -> np.ndarray:
        array = np.concatenate([c[name] for c in chunks])[order]
        return array[:, 0] if array.ndim == 2 and array.shape[1] == 1 else array

    def ordered(values: list) -> list:
        return [values[i] for i in order]

    names = chunks[0]["slices"].keys() if chunks else []
    return {
        "ids": ordered(ids),
        "data": ordered([d for c in chunks for d in c["data"]]),
        "slices": {n: ordered([v for c in chunks for v in c["slices"][n]]) for n in names},
        "key": chunks[0]["key"] if chunks else None,
        "classes": chunks[0].get("classes") if chunks else None,
        "a": stacked("a") if chunks else None, "b": stacked("b") if chunks else None,
        "logged": stacked("logged") if chunks else None,
    }


def _class_names(answered: list[str] | None, model_dir: str) -> list[str] | None:
    """A model's class names: those it answers with, else its build record's."""
    if answered is not None:
        return answered
    from tandem.components.build_record import RecordError, load_record

    try:
        return load_record(model_dir).get("classes")
    except RecordError:
        return None


def _label_values(values: list, classes: list | None, error: str | None) -> np.ndarray:
    """Labels as the comparison scores them. Given the model's `classes` (a multi-class model,
    or a binary one whose labels are text), a label is a class: its name as the model answers
    it ("small", "Yes", or "2" for integer class ids), else its position; a label that is
    neither is -1, counted as an unknown class. Otherwise a label is a number; labels read as
    text (`error`: why they are not numbers) are refused."""
    if classes is None:
        if error is not None:
            raise UnscorableLabelsError(f"{error} (the model names no classes, so its labels "
                                        "are numbers)")
        return np.array(values, dtype=np.float64)
    position = {(c.decode() if isinstance(c, bytes) else str(c)): k
                for k, c in enumerate(classes)}
    out = np.full(len(values), -1.0)
    for i, value in enumerate(values):
        if str(value) in position:
            out[i] = position[str(value)]
        else:
            with contextlib.suppress(ValueError):
                out[i] = float(value)
    return out


def _timings(totals: dict[str, float]) -> dict[str, Any]:
    """run.json: inference time per batch of each model."""
    batches = max(1, int(totals.get("batches", 0)))
    return {"inference": {
        "batches": batches,
        "a_ms_per_batch": round(1000 * totals.get("a_seconds", 0.0) / batches, 3),
        "b_ms_per_batch": round(1000 * totals.get("b_seconds", 0.0) / batches, 3),
    }}


def _quality(replayed: dict, meta: dict, classes: list | None, thresholds: Thresholds,
             rng: np.random.Generator, problem: str) -> dict[str, Any]:
    """A's and B's quality on the replayed requests that have a label; `classes`: A's class
    names when its labels are classes (`_label_values`)."""
    a, b, n = replayed["a"], replayed["b"], len(replayed["ids"])
    labels = meta["labels"]
    known = [i for i, rid in enumerate(replayed["ids"]) if rid in labels]
    y = _label_values([labels[replayed["ids"][i]] for i in known], classes,
                      meta.get("labels_error"))
    idx = np.array(known, dtype=np.int64)
    found: dict[str, Any] = {"labels": meta["labels_path"], "matched": len(known),
                             "unmatched": n - len(known)}
    if classes is not None:
        # A label that is a class is its position; any other value cannot be scored.
        k = a.shape[1] if a.ndim == 2 else 2
        scored = (y == np.round(y)) & (y >= 0) & (y < k)
        found["unknown_class"] = int((~scored).sum())
        idx, y = idx[scored], y[scored]
    found["metrics"] = quality(a[idx], b[idx], y, problem, thresholds, rng)
    return found


def _write_divergent(replayed: dict, top: np.ndarray, delta: np.ndarray, path: str) -> None:
    """The most divergent requests, as tf.Examples carrying both predictions."""
    import tensorflow as tf

    a, b = replayed["a"], replayed["b"]
    with tf.io.TFRecordWriter(path, options=tf.io.TFRecordOptions(compression_type="GZIP")) as w:
        for i in top:
            example = tf.train.Example.FromString(replayed["data"][i])
            f = example.features.feature
            f["shadow_request_id"].bytes_list.value.append(replayed["ids"][i].encode())
            f["shadow_a"].float_list.value.extend(np.ravel(a[i]).tolist())
            f["shadow_b"].float_list.value.extend(np.ravel(b[i]).tolist())
            f["shadow_abs_delta"].float_list.value.append(float(delta[i]))
            w.write(example.SerializeToString(deterministic=True))


def _page(report: dict, replayed: dict, top: np.ndarray, delta: np.ndarray,
          names: tuple | None, run: dict, render: Render) -> str:
    """report.html: the page draws a binary model's positive score, a multi-class model's
    scores whole, and the most divergent requests' answers."""
    a, b, problem = replayed["a"], replayed["b"], report["problem"]
    shown = (lambda x: x if x.ndim == 1 or multiclass(x) else x[:, -1]) \
        if problem == CLASSIFICATION else (lambda x: x if x.ndim == 1 else x[:, 0])

    def answer(x: np.ndarray) -> float | str:
        """What the page shows of one answer: a multi-class model's class and its score."""
        if names is None:
            return float(np.ravel(x)[-1])
        return f"{report['overall']['flip_matrix']['classes'][x.argmax()]} {x.max():.4g}"

    rows = [{"id": replayed["ids"][i], "a": answer(a[i]), "b": answer(b[i]),
             "delta": float(delta[i])} for i in top]
    return render(report, shown(a), shown(b), run, rows)


def build_report(chunks: list[dict], stats: list[dict], out_dir: str, meta: dict,
                 thresholds: Thresholds, slices: list[list[str]], top_n: int,
                 render: Render | None = None, section: Section | None = None) -> dict:
    """The report (written as report.json), compared overall and per slice of `slices`, and
    the `top_n` most divergent examples."""
    import tensorflow as tf

    replayed = _merge(chunks)
    n = len(replayed["ids"])
    totals: dict[str, float] = {}
    for s in stats:
        for k, v in s.items():
            totals[k] = totals.get(k, 0) + v
    report: dict[str, Any] = {"baseline": meta["baseline"], "candidate": meta["candidate"],
                              "logs": meta["logs"], "seed": thresholds.seed}
    report["input"] = {k: int(totals.get(k, 0)) for k in INPUT_COUNTS}
    report["input"]["replayed_examples"] = n
    run = _timings(totals)
    _write(out_dir, RUN, json.dumps(run, indent=2, sort_keys=True))
    if not n:
        report["verdict"] = {"passed": False, "checks": [
            {"check": "replayed requests", "value": 0, "limit": thresholds.min_requests,
             "passed": False}]}
        _write(out_dir, REPORT, json.dumps(report, indent=2, sort_keys=True))
        if render is not None:
            _write(out_dir, HTML, render(report, run=run))
        return report
    a, b, logged = replayed["a"], replayed["b"], replayed["logged"]
    problem = meta.get("problem") or (
        CLASSIFICATION if replayed["key"] in ("probabilities", "scores") else REGRESSION)
    report["problem"] = problem
    diff = np.abs(a - logged).reshape(n, -1).max(axis=1)
    report["parity"] = {
        "max_abs_diff": float(round(float(diff.max()), 9)),
        "mismatched": int((diff > thresholds.parity_tolerance).sum()),
        "tolerance": thresholds.parity_tolerance,
    }
    answered = replayed["classes"] or (None, None)
    names = None  # A's and B's class names, for a multi-class model
    if problem == CLASSIFICATION and multiclass(a):
        names = (_class_names(answered[0], meta["baseline"]),
                 _class_names(answered[1], meta["candidate"]))
    classes = names[0] if names is not None else None
    # One generator, drawn from in this order (overall, slices, quality), so the same seed
    # gives the same intervals.
    rng = np.random.default_rng(thresholds.seed)
    overall = compare(a, b, problem, thresholds, rng, classes)
    report["overall"] = overall
    report["slices"] = {}
    for spec in slices:
        groups: dict[str, list[int]] = {}
        for i in range(n):
            value = ",".join(str(replayed["slices"][f][i]) for f in spec)
            groups.setdefault(value, []).append(i)
        report["slices"][",".join(spec)] = {
            value: compare(a[idx], b[idx], problem, thresholds, rng, classes)
            for value, idx in sorted(groups.items())}
    if meta.get("labels") is not None:
        label_classes = classes
        if label_classes is None and problem == CLASSIFICATION and meta.get("labels_error"):
            # A binary model's labels as text ("Yes", "No"): its class names, in the served
            # order, say which one its probability is of.
            label_classes = _class_names(answered[0], meta["baseline"])
        report["quality"] = _quality(replayed, meta, label_classes, thresholds, rng, problem)
    report["verdict"] = verdict(overall, report["parity"], n, problem, thresholds,
                                report.get("quality", {}).get("metrics"),
                                names if names is not None and None not in names else None)
    if section is not None:
        name, content, checks = section(chunks)
        report[name] = content
        report["verdict"]["checks"].extend(checks)
        report["verdict"]["passed"] = all(c["passed"] for c in report["verdict"]["checks"])
    tf.io.gfile.makedirs(out_dir)
    delta = np.abs(b - a).reshape(n, -1).max(axis=1)
    top = np.argsort(-delta, kind="stable")[:top_n]
    _write_divergent(replayed, top, delta, os.path.join(out_dir, DIVERGENT))
    report["divergent"] = {"file": DIVERGENT, "count": int(len(top)),
                           "max_abs_delta": float(round(float(delta[top[0]]), 6))}
    _write(out_dir, REPORT, json.dumps(report, indent=2, sort_keys=True))
    if render is not None:
        _write(out_dir, HTML, _page(report, replayed, top, delta, names, run, render))
    return report


def _write(out_dir: str, name: str, text: str) -> None:
    import tensorflow as tf

    tf.io.gfile.makedirs(out_dir)
    with tf.io.gfile.GFile(os.path.join(out_dir, name), "w") as f:
        f.write(text + "\n")
