"""`tandem monitor`: drift and skew in what the gateway logged.

    log files --ReadWindows--> (window, RecordBatch) --TFDV sliced statistics--> one
    DatasetFeatureStatistics per window --> per window: schema anomalies (SERVING
    environment), drift against the previous window, skew against the served model's
    training statistics --> anomalies protos, summary.json, report.html, alerts

    ReadWindows --> (window, the model's answers) --TFDV sliced statistics--> per window:
    prediction drift against the previous window (components/monitor/predictions.py)

The statistics are TFDV's own (GenerateSlicedStatisticsImpl, keyed by window), computed in
one Beam pass over the log; every judgment afterwards reads only the statistics protos. With
labels, each logged example gets its label (as the schema types it, schemas/labels.py), so
the label's drift and skew are judged as a feature's.
"""

from __future__ import annotations

import dataclasses
import json
import os
import time
from collections.abc import Callable
from typing import Any

from tandem.components.monitor.alerts import alert_text, send_alerts
from tandem.components.monitor.drift import DriftConfig, FeatureThresholds, compare_datasets
from tandem.components.monitor.errors import MonitorError
from tandem.components.monitor.feature_skew import feature_value_skew
from tandem.components.monitor.lineage import (
    find_training_statistics,
    load_statistics,
    served_model,
)
from tandem.components.monitor.sources import attribute
from tandem.components.monitor.windows import (
    STATISTICS,
    monitored_schema,
    parse_duration,
    window_statistics,
)
from tandem.schemas.identifiers import identifiers
from tandem.schemas.statistics import common_stats, feature_name

# The job's parts that its callers (the CLI, the executor, the notebook) import from here.
__all__ = ["STATISTICS", "MonitorError", "drift_config", "find_training_statistics",
           "load_statistics", "parse_duration", "run_monitor", "served_model"]

SUMMARY = "summary.json"
HTML = "report.html"


def drift_config(monitor, kind: str, ids: dict[str, str]) -> DriftConfig:
    """The DriftConfig for one comparison ("drift" or "skew") from the pipeline config's
    `monitor:` section: per-feature thresholds override the section's defaults; identifiers
    (schemas/identifiers.py) are never judged."""
    base = getattr(monitor, kind)

    def thresholds(t) -> FeatureThresholds:
        return FeatureThresholds(psi=t.psi, wasserstein=t.wasserstein, linf=t.linf,
                                 missing=t.missing, skip=t.skip)

    features = {name: thresholds(t) for name, t in monitor.features.items()}
    return DriftConfig(default=thresholds(base), features=features, alpha=monitor.alpha,
                       min_examples=monitor.min_examples, bins=monitor.bins,
                       bootstrap=monitor.bootstrap, seed=monitor.seed,
                       identifiers=dict(ids))


def _one(dataset):
    from tensorflow_metadata.proto.v0 import statistics_pb2

    out = statistics_pb2.DatasetFeatureStatisticsList()
    out.datasets.add().CopyFrom(dataset)
    return out


def _tfdv_measures(anomalies) -> dict[str, list[dict]]:
    """TFDV's own comparator measurements (L-infinity, Jensen-Shannon), per feature, from an
    Anomalies proto: recorded for every feature with a comparator, under threshold or not."""
    out: dict[str, list[dict]] = {}
    for info in list(anomalies.drift_skew_info):
        name = info.path.step[0] if info.path.step else ""
        for m in list(info.drift_measurements) + list(info.skew_measurements):
            out.setdefault(name, []).append({
                "type": type(m).Type.Name(m.type), "value": round(m.value, 6),
                "threshold": round(m.threshold, 6)})
    return out


@dataclasses.dataclass(frozen=True)
class _Judging:
    """What every window is judged against: the schema in its environment, the training
    statistics (None without them) and the drift, skew and answers' thresholds."""

    schema: Any
    environment: str
    min_examples: int
    train: Any
    drift: DriftConfig
    skew: DriftConfig
    answers: DriftConfig


def _judge_window(judging: _Judging, key: str, w: dict, dataset, answers, previous,
                  previous_answers, window_dir: str) -> dict[str, Any]:
    """One window's verdicts, written under window_dir: schema anomalies; drift against the
    previous judged window, of the examples and of the model's answers; skew against
    training."""
    import tensorflow as tf
    import tensorflow_data_validation as tfdv

    schema, environment, train = judging.schema, judging.environment, judging.train
    entry: dict[str, Any] = {"window": key, "records": w["records"],
                             "examples": w["examples"], "rejected": w["rejected"],
                             "first": w["first"], "last": w["last"],
                             "sources": w.get("sources", {})}
    tf.io.gfile.makedirs(window_dir)
    current = _one(dataset)
    anomalies = tfdv.validate_statistics(current, schema, environment=environment)
    tfdv.write_anomalies_text(anomalies, os.path.join(window_dir, "anomalies.pbtxt"))
    entry["schema_anomalies"] = {
        name: info.short_description for name, info in sorted(anomalies.anomaly_info.items())}
    entry["too_small"] = dataset.num_examples < judging.min_examples
    if previous is not None:
        tfdv_drift = tfdv.validate_statistics(
            current, _measurable(schema, "drift_comparator", previous, dataset),
            environment=environment, previous_statistics=_one(previous))
        tfdv.write_anomalies_text(tfdv_drift, os.path.join(window_dir, "drift.pbtxt"))
        entry["drift"] = compare_datasets(previous, dataset, judging.drift)
        entry["drift"]["tfdv"] = _tfdv_measures(tfdv_drift)
    if train is not None:
        tfdv_skew = tfdv.validate_statistics(
            _one(train), _measurable(schema, "skew_comparator", train, dataset),
            environment=environment, serving_statistics=current)
        tfdv.write_anomalies_text(tfdv_skew, os.path.join(window_dir, "skew.pbtxt"))
        entry["skew"] = compare_datasets(train, dataset, judging.skew)
        entry["skew"]["tfdv"] = _tfdv_measures(tfdv_skew)
    if previous_answers is not None and answers is not None:
        entry["prediction_drift"] = compare_datasets(previous_answers, answers, judging.answers)
    with tf.io.gfile.GFile(os.path.join(window_dir, SUMMARY), "w") as f:
        f.write(json.dumps(entry, indent=2, sort_keys=True) + "\n")
    return entry


def _value_skew(summary: dict, files: list[str], training_examples: str, config,
                out_dir: str, beam_args: list[str] | None,
                progress: Callable[[str], None]) -> None:
    """Feature-value skew into the summary: the features whose values differ for the same
    ids beyond the config's rate join the skewed features."""
    monitor = config.monitor
    progress(f"feature-value skew: logged examples joined with {training_examples} by "
             f"'{monitor.id_feature}' ...")
    rows = feature_value_skew(files, training_examples, monitor.id_feature,
                              [config.label], out_dir, beam_args)
    skewed = sorted(r["feature"] for r in rows
                    if r["mismatch_rate"] > monitor.max_mismatch_rate)
    summary["feature_value_skew"] = {"features": rows, "skewed": skewed,
                                     "max_mismatch_rate": monitor.max_mismatch_rate}
    for name in skewed:
        if name not in summary["skew_features"]:
            summary["skew_features"].append(name)
    summary["skew_features"].sort()
    progress("  " + (f"values differ for the same ids in: {', '.join(skewed)}" if skewed
                     else "no feature's values differ for the same ids"))


def run_monitor(logs: str, config, out_dir: str, window_s: float | None = None,
                window_records: int | None = None, training_statistics: str | None = None,
                labels: str | None = None, beam_args: list[str] | None = None,
                training_examples: str | None = None,
                progress: Callable[[str], None] = lambda line: None,
                render: Callable[[dict, Any, Any, Any], str] | None = None) -> dict[str, Any]:
    """Statistics per window, then schema, drift and skew checks; writes everything under
    out_dir and returns the summary. `config` is the PipelineConfig (or the same settings,
    as the TrafficMonitor executor gets them). `render(summary, window statistics, training
    statistics, schema)` draws report.html: the caller gives it (reports/stats.py's, by way
    of pipeline/), since the job measures and does not draw."""
    import tensorflow as tf
    import tensorflow_data_validation as tfdv

    from tandem.schemas.request_log import LogError, expand

    monitor = config.monitor
    try:
        files = expand(logs)
    except LogError as e:
        raise MonitorError(str(e)) from None
    if not files:
        raise MonitorError(f"no request-log files match {logs}")
    curated = tfdv.load_schema_text(config.schema)
    schema = monitored_schema(curated, config.label, config.problem_type)
    window_s = monitor.window_s if window_s is None else window_s
    window_records = window_records or monitor.window_records
    if window_records < 1:
        raise MonitorError("--window-records must be at least 1")
    label_map, kind = None, ""
    if labels:
        from tandem.schemas.labels import LabelsError, label_kind, read_labels

        try:
            kind = label_kind(curated, config.label)
            label_map = {k: v.value for k, v in read_labels(labels, kind=kind).items()}
        except LabelsError as e:
            raise MonitorError(str(e)) from None
    model_name, version = served_model(files)
    if model_name and model_name != config.model_name:
        raise MonitorError(f"{logs} was logged for model '{model_name}', but config "
                           f"'{config.name}' is for '{config.model_name}'")
    train_path = training_statistics or monitor.training_statistics or (
        find_training_statistics(config.metadata_path, config.model_name, version)
        if version else None)
    train = load_statistics(train_path).datasets[0] if train_path else None

    start = time.monotonic()
    progress(f"monitor: {len(files)} log file(s), windows of "
             + (f"{window_s:g}s" if window_s else f"{window_records:,} requests") + " ...")
    stats, answer_stats, meta = window_statistics(
        files, schema, out_dir, window_s or 0.0, window_records, beam_args, label_map,
        config.label, kind, config.problem_type)
    if not meta.get("windows"):
        raise MonitorError(f"{logs}: no logged requests to monitor (read {meta.get('records', 0)}"
                           f" records, {meta.get('unreadable', 0)} unreadable, "
                           f"{meta.get('torn', 0)} torn)")
    datasets = {d.name: d for d in stats.datasets}
    answer_sets = {d.name: d for d in answer_stats.datasets if d.num_examples}
    keys = sorted(meta["windows"])
    missing_features = _foreign_schema(datasets[keys[0]], schema, config)
    if missing_features:
        raise MonitorError(
            f"{logs} does not look like '{config.name}' traffic: {len(missing_features)} of "
            f"the schema's features ({', '.join(missing_features[:5])}, ...) are absent from "
            "every example")
    environment = "TRAINING" if label_map is not None else "SERVING"
    # Declared identifiers, and any string feature unique per example in the training
    # statistics and every window alike.
    ids = identifiers(curated, ([train] if train is not None else []) + list(datasets.values()))
    drift_cfg, skew_cfg = drift_config(monitor, "drift", ids), drift_config(monitor, "skew", ids)
    answers_cfg = drift_config(monitor, "drift", {})
    if label_map is None:  # without joined labels, what SERVING lacks is not compared
        absent = {f.name for f in schema.feature if "SERVING" in f.not_in_environment}
        for cfg in (drift_cfg, skew_cfg):
            for name in absent | {config.label}:
                cfg.features[name] = FeatureThresholds(skip=True)
    summary: dict[str, Any] = {
        "logs": logs, "config": config.name, "model": {"name": model_name, "version": version},
        "training_statistics": train_path, "environment": environment,
        "input": {k: meta.get(k, 0) for k in ("files", "records", "torn", "corrupt",
                                               "unreadable", "shadow_records",
                                               "labelled_examples", "answered_examples",
                                               "unfit_answers")},
        "fdr": {"method": "Benjamini-Hochberg", "alpha": monitor.alpha},
        "identifiers": ids,
        "windows": [],
    }
    judging = _Judging(schema, environment, monitor.min_examples, train, drift_cfg, skew_cfg,
                       answers_cfg)
    previous = previous_answers = None
    earlier: list[str] = []  # the snapshots of the judged windows so far
    for i, key in enumerate(keys):
        dataset, answers, w = datasets.get(key), answer_sets.get(key), meta["windows"][key]
        entry = _judge_window(judging, key, w, dataset, answers, previous, previous_answers,
                              os.path.join(out_dir, f"window-{i:04d}"))
        if "drift" in entry:
            entry["drift"]["sources"] = attribute(entry, earlier)
        summary["windows"].append(entry)
        progress(f"  window {key}: {w['records']:,} requests, {dataset.num_examples:,} examples"
                 + ("" if not entry["too_small"] else " (too small to judge)")
                 + alert_text(entry))
        if not entry["too_small"]:
            earlier = sorted(set(earlier) | set(entry["sources"]))
            previous = dataset
            previous_answers = answers if answers is not None else previous_answers
    summary["drift_features"] = sorted({f for w in summary["windows"]
                                        for f in w.get("drift", {}).get("alerts", [])})
    summary["source_attribution"] = [
        {"window": w["window"], **a} for w in summary["windows"]
        for a in w.get("drift", {}).get("sources", []) if a["changed_source"]]
    summary["skew_features"] = sorted({f for w in summary["windows"]
                                       for f in w.get("skew", {}).get("alerts", [])})
    summary["schema_anomalies"] = sorted({f for w in summary["windows"]
                                          for f in w["schema_anomalies"]})
    summary["prediction_drift_features"] = sorted(
        {f for w in summary["windows"] for f in w.get("prediction_drift", {}).get("alerts", [])})
    summary["prediction_drift"] = _prediction_drift(summary, config, answer_sets)
    summary["label_drift"] = _label_drift(summary, config, kind) if label_map is not None \
        else None
    summary["feature_value_skew"] = None
    training_examples = training_examples or monitor.training_examples
    if training_examples:
        _value_skew(summary, files, training_examples, config, out_dir, beam_args, progress)
    summary["seconds"] = round(time.monotonic() - start, 2)
    with tf.io.gfile.GFile(os.path.join(out_dir, SUMMARY), "w") as f:
        f.write(json.dumps(summary, indent=2, sort_keys=True) + "\n")
    if render is not None:
        with tf.io.gfile.GFile(os.path.join(out_dir, HTML), "w") as f:
            f.write(render(summary, stats, train, schema))
        summary["report"] = os.path.join(out_dir, HTML)
    send_alerts(summary, monitor, config)
    return summary


def _measurable(schema, comparator: str, *datasets):
    """The schema without the Jensen-Shannon thresholds TFDV cannot measure on these
    statistics: a numeric feature with no histogram in one of them (no values in the window,
    as a nearly empty column has). TFDV would skip each with a warning on the terminal; the
    feature is compared by tandem's own measures either way (compare_datasets)."""

    def measured(dataset) -> set[str]:
        """Its features TFDV can measure: categorical ones (from their top values), numeric
        ones with values and a histogram."""
        return {feature_name(f) for f in dataset.features
                if f.WhichOneof("stats") != "num_stats"
                or (f.num_stats.common_stats.num_non_missing > 0
                    and any(h.buckets for h in f.num_stats.histograms))}

    everywhere = set.intersection(*(measured(d) for d in datasets))
    names = {f.name for f in schema.feature
             if getattr(f, comparator).HasField("jensen_shannon_divergence")
             and f.name not in everywhere}
    if not names:
        return schema
    pruned = type(schema)()
    pruned.CopyFrom(schema)
    for f in pruned.feature:
        if f.name in names:
            getattr(f, comparator).ClearField("jensen_shannon_divergence")
    return pruned


def _windows_where(summary: dict, kind: str, name: str) -> list[str]:
    return [w["window"] for w in summary["windows"]
            if name in w.get(kind, {}).get("alerts", [])]


def _prediction_drift(summary: dict, config, answer_sets: dict) -> dict | None:
    """What the model's answers were judged by, and where they drifted; None when the log
    holds no answer of the config's problem type."""
    if not answer_sets:
        return None
    columns = sorted({feature_name(f) for d in answer_sets.values() for f in d.features})
    return {"problem_type": config.problem_type, "columns": columns,
            "answered_examples": summary["input"]["answered_examples"],
            "unfit_answers": summary["input"]["unfit_answers"],
            "features": summary["prediction_drift_features"],
            "windows": {name: _windows_where(summary, "prediction_drift", name)
                        for name in summary["prediction_drift_features"]}}


def _label_drift(summary: dict, config, kind: str) -> dict:
    """The joined label's verdicts: the windows where it drifted (against the previous
    window) and where it is skewed (against training)."""
    return {"label": config.label, "kind": kind,
            "labelled_examples": summary["input"]["labelled_examples"],
            "drift": _windows_where(summary, "drift", config.label),
            "skew": _windows_where(summary, "skew", config.label)}


def _foreign_schema(dataset, schema, config) -> list[str]:
    """The schema's SERVING features absent from every example of a window, when that is
    most of them: the log holds another dataset's traffic."""
    present = {feature_name(f) for f in dataset.features
               if common_stats(f).num_non_missing > 0}
    expected = [f.name for f in schema.feature
                if "SERVING" not in f.not_in_environment and f.name != config.label]
    absent = [name for name in expected if name not in present]
    return absent if len(absent) > len(expected) // 2 else []
