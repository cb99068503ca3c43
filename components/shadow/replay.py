"""Shadow replay: a Beam job that replays logged traffic through model A (the baseline) and
model B (the candidate), checks A's offline answers against A's logged ones (training/serving
skew), and compares B with A prediction by prediction.

    logs --ReadLoggedExamples--> chunks (ids, examples, A logged) --KeepFirstLogged-->
         chunks, each id once --PredictBoth--> chunks with A offline and B --ToList-->
         report.json, divergent.tfrecord.gz

An example id logged more than once (a client's retry, a request sent again) is replayed once,
at its first logged occurrence (the one LogExampleGen trains on); the others are counted as
`duplicate_examples`, since counting them would narrow every interval without new evidence.

Elements are chunks of thousands of examples, not single examples: on DirectRunner the
cost of an element is tens of microseconds, which per example would cost more than both
models' inference.

It runs on DirectRunner here; on another Beam runner only the pipeline args change.
"""

from __future__ import annotations

import contextlib
import dataclasses
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

# Draws report.html from the report: (report, a=None, b=None, run=None, divergent=None) ->
# the page's HTML. The caller gives it (reports/replay.py's, by way of pipeline/): the job
# measures, it does not know how its page is drawn.
Render = Callable[..., str]


class ReplayError(BadInputError):
    """Input the replay cannot use: the message names it (exit status 2)."""


@dataclasses.dataclass
class ReplayConfig:
    thresholds: Thresholds = dataclasses.field(default_factory=Thresholds)
    slices: list[list[str]] = dataclasses.field(default_factory=list)
    top_n: int = 20
    batch_size: int = 512


def model_version_dir(path: str) -> tuple[str, int]:
    """A SavedModel directory and its version: a version dir, or the newest under a base."""
    if os.path.isfile(os.path.join(path, "saved_model.pb")):
        name = os.path.basename(os.path.normpath(path))
        return path, int(name) if name.isdigit() else 0
    versions = sorted(int(v) for v in os.listdir(path) if v.isdigit()) \
        if os.path.isdir(path) else []
    for version in reversed(versions):
        candidate = os.path.join(path, str(version))
        if os.path.isfile(os.path.join(candidate, "saved_model.pb")):
            return candidate, version
    raise ReplayError(f"{path} is not a SavedModel (no saved_model.pb in it or in a version "
                      "directory under it)")


def _signature_inputs(path: str) -> dict[str, Any]:
    from tensorflow.core.protobuf import saved_model_pb2

    from tandem.schemas.contracts import SERVING_DEFAULT

    with open(os.path.join(path, "saved_model.pb"), "rb") as f:
        saved = saved_model_pb2.SavedModel.FromString(f.read())
    sigs = saved.meta_graphs[0].signature_def
    if SERVING_DEFAULT not in sigs:
        raise ReplayError(f"{path} has no '{SERVING_DEFAULT}' signature")
    sig = sigs[SERVING_DEFAULT]
    return {"inputs": sorted(sig.inputs), "outputs": sorted(sig.outputs)}


def preflight(logs: str, baseline: str, candidate: str) -> tuple[list[str], str, str, int]:
    """Files, both model dirs and A's version; refuses what cannot be replayed."""
    from tandem.schemas.request_log import PRIMARY, LogError, expand, read_records

    try:
        files = expand(logs)
    except LogError as e:
        raise ReplayError(str(e)) from None
    a_dir, a_version = model_version_dir(baseline)
    b_dir, _ = model_version_dir(candidate)
    a_sig, b_sig = _signature_inputs(a_dir), _signature_inputs(b_dir)
    if a_sig["inputs"] != b_sig["inputs"]:
        raise ReplayError(f"the models' serving signatures differ: baseline takes "
                          f"{a_sig['inputs']}, candidate takes {b_sig['inputs']}")
    if not set(a_sig["outputs"]) & set(b_sig["outputs"]):
        raise ReplayError(f"the models share no output: baseline {a_sig['outputs']}, "
                          f"candidate {b_sig['outputs']}")
    logged = next((r for r in read_records(files[0], files=files) if r.role == PRIMARY
                   and not r.error), None)
    if logged is None:
        raise ReplayError(f"no answered requests in {logs}")
    if a_version and logged.model_version and logged.model_version != a_version:
        raise ReplayError(f"the log was written by {logged.model_name} version "
                          f"{logged.model_version}, but the baseline given is version "
                          f"{a_version} ({a_dir}); replay against the model that served")
    return files, a_dir, b_dir, a_version


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
    """Labels as the comparison scores them. For a multi-class model a label is a class: its
    name as the model answers it (`classes`: "small", or "2" for integer class ids), else its
    position; a label that is neither is -1, counted as an unknown class. Otherwise a label is
    a number; labels read as text (`error`: why they are not numbers) are refused."""
    if classes is None:
        if error is not None:
            raise ReplayError(f"{error} (the model is not multi-class, so its labels are "
                              "numbers)")
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


def build_report(chunks: list[dict], stats: list[dict], config: ReplayConfig, out_dir: str,
                 meta: dict, render: Render | None = None) -> dict:
    """The report (written as report.json) and the most divergent examples."""
    import tensorflow as tf

    replayed = _merge(chunks)
    n = len(replayed["ids"])
    totals: dict[str, float] = {}
    for s in stats:
        for k, v in s.items():
            totals[k] = totals.get(k, 0) + v
    thresholds = config.thresholds
    report: dict[str, Any] = {"baseline": meta["baseline"], "candidate": meta["candidate"],
                              "logs": meta["logs"], "seed": thresholds.seed}
    report["input"] = {k: int(totals.get(k, 0)) for k in (
        "files", "records", "torn", "corrupt", "unreadable", "shadow_records",
        "failed_requests", "rejected_requests", "duplicate_examples")}
    report["input"]["replayed_examples"] = n
    batches = max(1, int(totals.get("batches", 0)))
    # Timings change from run to run: they go to run.json, so report.json stays
    # byte-identical for the same logs, models and seed.
    run = {"inference": {
        "batches": batches,
        "a_ms_per_batch": round(1000 * totals.get("a_seconds", 0.0) / batches, 3),
        "b_ms_per_batch": round(1000 * totals.get("b_seconds", 0.0) / batches, 3),
    }}
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
    names = None  # A's and B's class names, for a multi-class model
    if problem == CLASSIFICATION and multiclass(a):
        answered = replayed["classes"] or (None, None)
        names = (_class_names(answered[0], meta["baseline"]),
                 _class_names(answered[1], meta["candidate"]))
    classes = names[0] if names is not None else None
    rng = np.random.default_rng(thresholds.seed)
    overall = compare(a, b, problem, thresholds, rng, classes)
    report["overall"] = overall
    report["slices"] = {}
    for spec in config.slices:
        key = ",".join(spec)
        groups: dict[str, list[int]] = {}
        for i in range(n):
            value = ",".join(str(replayed["slices"][f][i]) for f in spec)
            groups.setdefault(value, []).append(i)
        report["slices"][key] = {value: compare(a[idx], b[idx], problem, thresholds, rng,
                                                classes)
                                 for value, idx in sorted(groups.items())}
    labels = meta.get("labels")
    if labels is not None:
        known = [i for i, rid in enumerate(replayed["ids"]) if rid in labels]
        y = _label_values([labels[replayed["ids"][i]] for i in known], classes,
                          meta.get("labels_error"))
        idx = np.array(known, dtype=np.int64)
        report["quality"] = {"labels": meta["labels_path"], "matched": len(known),
                             "unmatched": n - len(known)}
        if names is not None:
            # A multi-class label is a class position; any other value cannot be scored.
            scored = (y == np.round(y)) & (y >= 0) & (y < a.shape[1])
            report["quality"]["unknown_class"] = int((~scored).sum())
            idx, y = idx[scored], y[scored]
        report["quality"]["metrics"] = quality(a[idx], b[idx], y, problem, thresholds, rng)
    report["verdict"] = verdict(overall, report["parity"], n, problem, thresholds,
                                report.get("quality", {}).get("metrics"),
                                names if names is not None and None not in names else None)
    tf.io.gfile.makedirs(out_dir)
    # The most divergent requests, as tf.Examples carrying both predictions.
    delta = np.abs(b - a).reshape(n, -1).max(axis=1)
    top = np.argsort(-delta, kind="stable")[:config.top_n]
    path = os.path.join(out_dir, DIVERGENT)
    with tf.io.TFRecordWriter(path, options=tf.io.TFRecordOptions(compression_type="GZIP")) as w:
        for i in top:
            example = tf.train.Example.FromString(replayed["data"][i])
            f = example.features.feature
            f["shadow_request_id"].bytes_list.value.append(replayed["ids"][i].encode())
            f["shadow_a"].float_list.value.extend(np.ravel(a[i]).tolist())
            f["shadow_b"].float_list.value.extend(np.ravel(b[i]).tolist())
            f["shadow_abs_delta"].float_list.value.append(float(delta[i]))
            w.write(example.SerializeToString(deterministic=True))
    report["divergent"] = {"file": DIVERGENT, "count": int(len(top)),
                           "max_abs_delta": float(round(float(delta[top[0]]), 6))}
    _write(out_dir, REPORT, json.dumps(report, indent=2, sort_keys=True))
    # The page draws a binary model's positive score; a multi-class model's scores whole.
    shown = (lambda x: x if x.ndim == 1 or multiclass(x) else x[:, -1]) \
        if problem == CLASSIFICATION else (lambda x: x if x.ndim == 1 else x[:, 0])

    def answer(x: np.ndarray) -> float | str:
        """What the page shows of one answer: a multi-class model's class and its score."""
        if names is None:
            return float(np.ravel(x)[-1])
        return f"{overall['flip_matrix']['classes'][x.argmax()]} {x.max():.4g}"

    rows = [{"id": replayed["ids"][i], "a": answer(a[i]), "b": answer(b[i]),
             "delta": float(delta[i])} for i in top]
    if render is not None:
        _write(out_dir, HTML, render(report, shown(a), shown(b), run, rows))
    return report


def _write(out_dir: str, name: str, text: str) -> None:
    import tensorflow as tf

    tf.io.gfile.makedirs(out_dir)
    with tf.io.gfile.GFile(os.path.join(out_dir, name), "w") as f:
        f.write(text + "\n")


def run_replay(logs: str, baseline: str, candidate: str, out_dir: str,
               config: ReplayConfig | None = None, beam_args: list[str] | None = None,
               problem: str | None = None, labels: str | None = None,
               render: Render | None = None) -> dict:
    """Run the replay job; returns the report (also written to out_dir/report.json), and
    out_dir/report.html when `render` is given."""
    import apache_beam as beam
    from apache_beam.options.pipeline_options import PipelineOptions

    from tandem.components.shadow.transforms import (
        STATS,
        KeepFirstLogged,
        PredictBoth,
        ReadLoggedExamples,
    )

    config = config or ReplayConfig()
    files, a_dir, b_dir, _ = preflight(logs, baseline, candidate)
    meta = {"baseline": os.path.abspath(a_dir), "candidate": os.path.abspath(b_dir),
            "logs": logs, "problem": problem}
    if labels:
        from tandem.schemas.labels import BYTES, LabelsError, read_labels

        try:
            read = read_labels(labels)  # numbers: binary, regression, class positions
        except LabelsError as e:
            try:  # or class names, which only a multi-class model can score (_label_values)
                read = read_labels(labels, kind=BYTES)
            except LabelsError:
                raise ReplayError(str(e)) from None
            meta["labels_error"] = str(e)
        meta["labels"] = {k: v.value for k, v in read.items()}
        meta["labels_path"] = labels
    slice_features = sorted({f for spec in config.slices for f in spec})
    options = PipelineOptions(beam_args or ["--direct_running_mode=in_memory"])
    with beam.Pipeline(options=options) as p:
        read = (p | "ListLogFiles" >> beam.Create(files)
                  | "ReadLoggedExamples" >> beam.ParDo(ReadLoggedExamples()).with_outputs(
                      STATS, main="examples"))
        kept = read.examples | "KeepFirstLogged" >> KeepFirstLogged()
        predicted = (kept.chunks
                     | "Spread" >> beam.Reshuffle()  # chunks of one file to every worker
                     | "PredictBoth" >> beam.ParDo(PredictBoth(a_dir, b_dir, slice_features,
                                                               config.batch_size))
                     .with_outputs(STATS, main="rows"))
        stats = ((read[STATS], kept[STATS], predicted[STATS]) | "AllStats" >> beam.Flatten()
                 | "StatsList" >> beam.combiners.ToList())
        _ = (predicted.rows
             | "ChunksList" >> beam.combiners.ToList()
             | "BuildReport" >> beam.Map(
                 lambda chunks, stats: build_report(chunks, stats, config, out_dir, meta,
                                                        render),
                 stats=beam.pvalue.AsSingleton(stats)))
    return load_report(out_dir)


def load_report(out_dir: str) -> dict:
    """A finished replay's report.json, with run.json's timings merged in."""
    import tensorflow as tf

    with tf.io.gfile.GFile(os.path.join(out_dir, REPORT)) as f:
        report = json.load(f)
    with tf.io.gfile.GFile(os.path.join(out_dir, RUN)) as f:
        report.update(json.load(f))
    return report


def load_replay_config(path: str | None, overrides: list[str] | None = None) -> ReplayConfig:
    """The replay YAML (all keys optional):

        thresholds: {max_flip_rate, max_p99_abs_delta, max_quality_drop, parity_tolerance,
                     min_requests, bootstrap, seed}   (null: reported, not gated)
        slices: [[country], [device]]
        top_n: 20
        batch_size: 512
    """
    from tandem.schemas.config_binding import bind, read_config

    raw = read_config(path, "replay config", overrides, ReplayError)
    config = bind(ReplayConfig, raw, "replay config", ReplayError)
    for key in ("top_n", "batch_size"):
        if getattr(config, key) < 1:
            raise ReplayError(f"key '{key}' in replay config: expected a positive integer, "
                              f"got {getattr(config, key)!r}")
    return config


def summary(report: dict) -> list[str]:
    """The terminal table: input, parity, the compared metrics and the gate's checks."""
    def interval(m: dict) -> str:
        if m.get("value") is None:
            return "-"
        return f"{m['value']:.4f} [{m['low']:.4f}, {m['high']:.4f}] n={m['n']:,}"

    i = report["input"]
    lines = [f"read {i['records']:,} records from {i['files']} file(s): "
             f"{i['replayed_examples']:,} examples replayed; skipped {i['torn']} torn, "
             f"{i['corrupt']} corrupt, {i['unreadable']} unreadable, {i['failed_requests']} "
             f"failed and {i['rejected_requests']} rejected requests, and "
             f"{i['duplicate_examples']:,} duplicate examples (an id logged before)"]
    if "parity" in report:
        p = report["parity"]
        lines.append(f"parity (A offline vs A logged): max |diff| {p['max_abs_diff']:.2e}, "
                     f"{p['mismatched']:,} beyond {p['tolerance']:g}")
        o = report["overall"]
        for name in ("agreement", "symmetric_flip_rate", "pos_to_neg_flip_rate",
                     "neg_to_pos_flip_rate"):
            if name in o:
                lines.append(f"  {name:<22} {interval(o[name])}")
        for q in ("mean", "p50", "p90", "p99"):
            lines.append(f"  |delta| {q:<14} {interval(o['abs_delta'][q])}")
        lines.append(f"  |delta| max            {o['abs_delta']['max']}")
        q = report.get("quality")
        if q:
            for name, entry in q["metrics"].items():
                if name != "n" and entry:
                    lines.append(f"  {name:<22} A {interval(entry['a'])}  B "
                                 f"{interval(entry['b'])}  (B - A "
                                 f"{interval(entry['b_minus_a'])}; {q['unmatched']:,} "
                                 "unlabelled)")
            if q.get("unknown_class"):
                lines.append(f"  {q['unknown_class']:,} label(s) not a class position, left "
                             "out of quality")
        inf = report["inference"]
        lines.append(f"inference: {inf['batches']} batches, A {inf['a_ms_per_batch']} ms, "
                     f"B {inf['b_ms_per_batch']} ms per batch")
    for check in report["verdict"]["checks"]:
        mark = "ok  " if check["passed"] else "FAIL"
        lines.append(f"  [{mark}] {check['check']}: {check['value']} (limit {check['limit']})")
    return lines
