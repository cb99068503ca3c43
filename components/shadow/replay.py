"""Shadow replay: a Beam job that replays logged traffic through model A (the baseline) and
model B (the candidate), checks A's offline answers against A's logged ones (training/serving
skew), and compares B with A prediction by prediction.

    logs --ReadLoggedExamples--> chunks (ids, examples, A logged) --KeepFirstLogged-->
         chunks, each id once --PredictBoth--> chunks with A offline and B --CoGroupByKey-->
         BuildReport (components/shadow/report.py): report.json, divergent.tfrecord.gz

An example id logged more than once (a client's retry, a request sent again) is replayed once,
at its first logged occurrence (the one LogExampleGen trains on); the others are counted as
`duplicate_examples`, since counting them would narrow every interval without new evidence.

Elements are chunks of thousands of examples, not single examples: on DirectRunner the
cost of an element is tens of microseconds, which per example would cost more than both
models' inference.

It runs on DirectRunner here; on another Beam runner only the pipeline args change.
"""

from __future__ import annotations

import dataclasses
import json
import os
from typing import Any

from tandem.components.shadow.compare import Thresholds
from tandem.components.shadow.report import REPORT, RUN, Render, Section, build_report
from tandem.schemas.exit_status import BadInputError


class ReplayError(BadInputError):
    """Input the replay cannot use: the message names it (exit status 2)."""


@dataclasses.dataclass
class ReplayConfig:
    """The replay's YAML (`--replay-config FILE`): the gate's thresholds and the report."""

    thresholds: Thresholds = dataclasses.field(default_factory=Thresholds)
    slices: list[list[str]] = dataclasses.field(default_factory=list)  # e.g. [[country]]
    top_n: int = 20  # most divergent requests kept in divergent.tfrecord.gz and the report
    batch_size: int = 512  # examples per inference call of each model


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


def run_replay(logs: str, baseline: str, candidate: str, out_dir: str,
               config: ReplayConfig | None = None, beam_args: list[str] | None = None,
               problem: str | None = None, labels: str | None = None,
               render: Render | None = None, predict=None,
               section: Section | None = None) -> dict:
    """Run the replay job; returns the report (also written to out_dir/report.json), and
    out_dir/report.html when `render` is given. `predict` makes the DoFn that answers each
    chunk (PredictBoth's arguments; default PredictBoth), `section` adds to the report: the
    replay with candidate features (components/shadow/features_replay.py) gives both."""
    import apache_beam as beam

    from tandem.components.beam_runtime import pipeline_options
    from tandem.components.shadow.transforms import (
        STATS,
        KeepFirstLogged,
        PredictBoth,
        ReadLoggedExamples,
    )

    config = config or ReplayConfig()
    predict = predict or PredictBoth
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
    options = pipeline_options(beam_args)
    with beam.Pipeline(options=options) as p:
        read = (p | "ListLogFiles" >> beam.Create(files)
                  | "ReadLoggedExamples" >> beam.ParDo(ReadLoggedExamples()).with_outputs(
                      STATS, main="examples"))
        kept = read.examples | "KeepFirstLogged" >> KeepFirstLogged()
        predicted = (kept.chunks
                     | "Spread" >> beam.Reshuffle()  # chunks of one file to every worker
                     | "PredictBoth" >> beam.ParDo(predict(a_dir, b_dir, slice_features,
                                                           config.batch_size))
                     .with_outputs(STATS, main="rows"))
        # The chunks and the counts meet under one key rather than the chunks travelling as
        # a side input: a side input is sized object by object, which cost as much as the
        # inference. The counts always hold an element (each file gives one), so the report
        # is written even when nothing was replayed.
        stats = ((read[STATS], kept[STATS], predicted[STATS]) | "AllStats" >> beam.Flatten()
                 | "KeyStats" >> beam.Map(lambda s: (None, s)))
        rows = predicted.rows | "KeyChunks" >> beam.Map(lambda c: (None, c))
        _ = ({"chunks": rows, "stats": stats}
             | "Together" >> beam.CoGroupByKey()
             | "BuildReport" >> beam.MapTuple(
                 lambda _, both: build_report(
                     list(both["chunks"]), list(both["stats"]), out_dir, meta,
                     config.thresholds, config.slices, config.top_n, render, section)))
    return load_report(out_dir)


def load_report(out_dir: str) -> dict:
    """A finished replay's report.json, with run.json's timings merged in."""
    import tensorflow as tf

    with tf.io.gfile.GFile(os.path.join(out_dir, REPORT)) as f:
        report = json.load(f)
    with tf.io.gfile.GFile(os.path.join(out_dir, RUN)) as f:
        report.update(json.load(f))
    return report


# A number's range per dotted key: (low, high, why), inclusive; None is unbounded. A limit
# set to null (reported, not gated) is not checked. `max_quality_drop` may be negative: B must
# then be better than A by that much.
RANGES: dict[str, tuple[float | None, float | None, str]] = {
    "top_n": (1, None, ""),
    "batch_size": (1, None, ""),
    "thresholds.max_flip_rate": (0, 1, "a share of the requests"),
    "thresholds.max_p99_abs_delta": (0, None, ""),
    "thresholds.parity_tolerance": (0, None, ""),
    "thresholds.min_requests": (0, None, ""),
    "thresholds.bootstrap": (20, None, "a 95% interval needs resamples beyond its tails"),
    "thresholds.max_missing_entities": (0, None, ""),
}


def load_replay_config(path: str | None, overrides: list[str] | None = None) -> ReplayConfig:
    """The replay YAML (all keys optional):

        thresholds: {max_flip_rate, max_p99_abs_delta, max_quality_drop, parity_tolerance,
                     min_requests, bootstrap, seed, max_missing_entities (a replay with
                     candidate features)}   (null: reported, not gated)
        slices: [[country], [device]]
        top_n: 20
        batch_size: 512
    """
    from tandem.schemas.config_binding import read_config

    return _bound(read_config(path, "replay config", overrides, ReplayError))


def replay_config_from_text(text: str | None) -> ReplayConfig:
    """The replay config a TFX component carries as an exec property (the JSON the promotion
    pipeline writes), bound and checked as a file of it would be."""
    try:
        raw = json.loads(text or "{}")
    except ValueError as e:
        raise ReplayError(f"replay config is not valid JSON: {e}") from None
    if not isinstance(raw, dict):
        raise ReplayError("replay config must be a mapping at the top level")
    return _bound(raw)


def _bound(raw: dict) -> ReplayConfig:
    from tandem.schemas.config_binding import bind, check_ranges

    config = bind(ReplayConfig, raw, "replay config", ReplayError)
    check_ranges(config, RANGES, "replay config", ReplayError)
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
