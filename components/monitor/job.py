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

import json
import os
import time
from collections.abc import Callable
from typing import Any

from tandem.components.monitor.drift import DriftConfig, FeatureThresholds, compare_datasets
from tandem.schemas.exit_status import BadInputError
from tandem.schemas.files import atomic_write, gzip_by_name
from tandem.schemas.identifiers import declared_identifiers, identifiers
from tandem.schemas.statistics import common_stats, feature_name

STATISTICS = "statistics.pb"
ANSWER_STATISTICS = "answer_statistics.pb"
SUMMARY = "summary.json"
HTML = "report.html"
CHUNK = 1000  # examples per RecordBatch
LABEL_TIMESTAMP = "__label_ts__"


class MonitorError(BadInputError):
    """Input the monitor cannot use: the message names it (exit status 2)."""


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


def parse_duration(text: str) -> float:
    """'90s', '15m', '1h', '1d' or plain seconds."""
    units = {"s": 1, "m": 60, "h": 3600, "d": 86400}
    text = text.strip().lower()
    try:
        if text and text[-1] in units:
            value = float(text[:-1]) * units[text[-1]]
        else:
            value = float(text)
    except ValueError:
        raise MonitorError(f"--window: '{text}' is not a duration (e.g. 15m, 1h, 3600)") \
            from None
    if value <= 0:
        raise MonitorError(f"--window must be positive, got '{text}'")
    return value


def _windows_reader(schema_bytes: bytes, window_s: float, window_records: int,
                    labels: dict | None, label_name: str, label_kind: str, problem_type: str):
    import apache_beam as beam

    from tandem.components.log_example_gen.join import label_fragment
    from tandem.components.monitor.predictions import AnswerColumns, answer_columns
    from tandem.schemas.request_log import PRIMARY, ReadStats, read_records

    class ReadWindows(beam.DoFn):
        """All log files, in order -> (window key, RecordBatch) chunks of examples, and of
        the model's answers to the `answers` output; per-window facts and read damage go to
        the `meta` output."""

        def setup(self):
            from tfx_bsl.coders import example_coder

            self._decoder = example_coder.ExamplesToRecordBatchDecoder(schema_bytes)

        def process(self, files: list[str]):
            stats = ReadStats()
            buffers: dict[str, list[bytes]] = {}
            answers: dict[str, AnswerColumns] = {}
            windows: dict[str, dict[str, Any]] = {}
            skipped = {"shadow_records": 0}
            labelled = answered = unfit = 0
            n = 0
            for record in read_records(files, stats, files=files):
                if record.role != PRIMARY:
                    skipped["shadow_records"] += 1
                    continue
                if window_s:
                    start = int(record.timestamp // window_s * window_s)
                    key = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(start))
                else:
                    key = f"{n // window_records:05d}"
                n += 1
                examples = record.examples()
                if labels is not None:
                    joined = []
                    for rid, example in zip(record.example_ids, examples, strict=False):
                        if rid in labels:
                            labelled += 1
                            example += label_fragment(label_name, labels[rid], label_kind)
                        joined.append(example)
                    examples = joined
                outputs = record.outputs() if examples else {}
                if outputs:
                    columns = answer_columns(outputs, problem_type, len(examples))
                    if columns is None:
                        unfit += len(examples)
                    else:
                        answered += len(examples)
                        window_answers = answers.setdefault(key, AnswerColumns())
                        window_answers.add(columns)
                        if window_answers.rows >= CHUNK:
                            yield beam.pvalue.TaggedOutput(
                                "answers", (key, window_answers.record_batch()))
                            answers[key] = AnswerColumns()
                w = windows.setdefault(key, {"records": 0, "examples": 0,
                                             "first": record.timestamp,
                                             "last": record.timestamp, "rejected": 0})
                w["records"] += 1
                w["examples"] += len(examples)
                w["first"] = min(w["first"], record.timestamp)
                w["last"] = max(w["last"], record.timestamp)
                w["rejected"] += int(bool(record.verdict.get("rejected")))
                buffer = buffers.setdefault(key, [])
                buffer.extend(examples)
                if len(buffer) >= CHUNK:
                    yield key, self._decoder.DecodeBatch(buffer)
                    buffers[key] = []
            for key, buffer in buffers.items():
                if buffer:
                    yield key, self._decoder.DecodeBatch(buffer)
            for key, window_answers in answers.items():
                if window_answers.rows:
                    yield beam.pvalue.TaggedOutput("answers",
                                                   (key, window_answers.record_batch()))
            yield beam.pvalue.TaggedOutput("meta", {
                "windows": windows, "files": stats.files, "records": stats.records,
                "torn": stats.torn, "corrupt": stats.corrupt, "unreadable": stats.unreadable,
                "labelled_examples": labelled, "answered_examples": answered,
                "unfit_answers": unfit, **skipped})

    return ReadWindows()


def stats_options(schema) -> Any:
    import tensorflow_data_validation as tfdv

    # Finer quantiles than TFDV's default 10 make PSI and Wasserstein precise. The answers
    # have no schema: their columns' types say what they are.
    return tfdv.StatsOptions(schema=schema, num_quantiles_histogram_buckets=100,
                             num_histogram_buckets=20, num_top_values=20,
                             num_rank_histogram_buckets=1000)


def window_statistics(files: list[str], schema, out_dir: str, window_s: float,
                      window_records: int, beam_args: list[str] | None,
                      labels: dict | None = None, label_name: str = "",
                      label_kind: str = "INT", problem_type: str = "binary_classification"):
    """One Beam pass: TFDV statistics per window of the examples and of the model's answers
    (each a DatasetFeatureStatisticsList with one dataset per window, named by its key) and
    the read facts."""
    import apache_beam as beam
    import tensorflow as tf
    from apache_beam.options.pipeline_options import PipelineOptions
    from tensorflow_data_validation.statistics import stats_impl
    from tensorflow_metadata.proto.v0 import statistics_pb2

    tf.io.gfile.makedirs(out_dir)
    stats_path = os.path.join(out_dir, STATISTICS)
    answers_path = os.path.join(out_dir, ANSWER_STATISTICS)
    meta_path = os.path.join(out_dir, ".read.json")
    reader = _windows_reader(schema.SerializeToString(), window_s, window_records, labels,
                             label_name, label_kind, problem_type)

    def write_stats(result, path):
        with tf.io.gfile.GFile(path, "wb") as f:
            f.write(result.SerializeToString())

    def write_meta(metas):
        with tf.io.gfile.GFile(meta_path, "w") as f:
            f.write(json.dumps(metas[0] if metas else {}))

    options = PipelineOptions(beam_args or ["--direct_running_mode=in_memory"])
    with beam.Pipeline(options=options) as p:
        read = (p | "Files" >> beam.Create([files])
                  | "ReadWindows" >> beam.ParDo(reader).with_outputs("meta", "answers",
                                                                     main="batches"))
        _ = (read.batches
             | "WindowStatistics" >> stats_impl.GenerateSlicedStatisticsImpl(
                 stats_options(schema), is_slicing_enabled=True)
             | "WriteStatistics" >> beam.Map(write_stats, stats_path))
        _ = (read.answers
             | "AnswerStatistics" >> stats_impl.GenerateSlicedStatisticsImpl(
                 stats_options(None), is_slicing_enabled=True)
             | "WriteAnswerStatistics" >> beam.Map(write_stats, answers_path))
        _ = read.meta | "Meta" >> beam.combiners.ToList() | "WriteMeta" >> beam.Map(write_meta)
    with tf.io.gfile.GFile(stats_path, "rb") as f:
        result = statistics_pb2.DatasetFeatureStatisticsList.FromString(f.read())
    answers = statistics_pb2.DatasetFeatureStatisticsList()
    if tf.io.gfile.exists(answers_path):
        with tf.io.gfile.GFile(answers_path, "rb") as f:
            answers.ParseFromString(f.read())
    with tf.io.gfile.GFile(meta_path) as f:
        meta = json.load(f)
    tf.io.gfile.remove(meta_path)
    return result, answers, meta


def feature_value_skew(files: list[str], training_examples: str, id_feature: str,
                       ignore: list[str], out_dir: str,
                       beam_args: list[str] | None) -> list[dict[str, Any]]:
    """TFDV's DetectFeatureSkew: logged examples joined with training examples by
    `id_feature`; per feature, how many joined pairs hold a different value."""
    import apache_beam as beam
    import tensorflow as tf
    import tensorflow_data_validation as tfdv
    from apache_beam.options.pipeline_options import PipelineOptions
    from google.protobuf import json_format
    from tensorflow.core.example import example_pb2

    from tandem.schemas.request_log import PRIMARY, read_records

    train_files = sorted(tf.io.gfile.glob(training_examples))
    if not train_files:
        raise MonitorError(f"no training examples match {training_examples}")
    path = os.path.join(out_dir, "feature_skew.json")

    def logged(files_):
        for record in read_records(files_, files=files_):
            if record.role == PRIMARY:
                for example in record.examples():
                    yield example_pb2.Example.FromString(example)

    def write(results):
        rows = sorted((json_format.MessageToDict(r, preserving_proto_field_name=True)
                       for r in results), key=lambda r: r.get("feature_name", ""))
        with tf.io.gfile.GFile(path, "w") as f:
            f.write(json.dumps(rows, indent=2, sort_keys=True) + "\n")

    compression = "GZIP" if gzip_by_name(train_files[0]) else "UNCOMPRESSED"
    options = PipelineOptions(beam_args or ["--direct_running_mode=in_memory"])
    with beam.Pipeline(options=options) as p:
        train = (p | "TrainingFiles" >> beam.Create(train_files)
                 | "ReadTraining" >> beam.io.ReadAllFromTFRecord(
                     compression_type=getattr(beam.io.filesystem.CompressionTypes,
                                              compression))
                 | "ParseTraining" >> beam.Map(example_pb2.Example.FromString))
        serving = (p | "Logs" >> beam.Create([files]) | "ReadLogged" >> beam.FlatMap(logged))
        results, _ = ((train, serving) | "DetectFeatureSkew" >> tfdv.DetectFeatureSkew(
            identifier_features=[id_feature], features_to_ignore=ignore,
            allow_duplicate_identifiers=True))
        _ = results | "All" >> beam.combiners.ToList() | "Write" >> beam.Map(write)
    with tf.io.gfile.GFile(path) as f:
        rows = json.load(f)
    out = []
    for r in rows:
        joined = int(r.get("match_count", 0)) + int(r.get("mismatch_count", 0))
        out.append({"feature": r.get("feature_name"), "joined": joined,
                    "mismatched": int(r.get("mismatch_count", 0)),
                    "training_only": int(r.get("base_only", 0)),
                    "serving_only": int(r.get("test_only", 0)),
                    "mismatch_rate": round(int(r.get("mismatch_count", 0)) / joined, 6)
                    if joined else 0.0})
    return out


def monitored_schema(schema, label: str = "", problem_type: str = ""):
    """The schema without the identifiers it declares (unique by design). They are neither
    decoded nor described per window: unique strings are the costliest statistics TFDV keeps
    (top-k and distinct sketches over every value), and an id never drifts. A classifier's
    integer label is a class id: it is described, and its drift judged, as a category."""
    from tensorflow_metadata.proto.v0 import schema_pb2

    pruned = type(schema)()
    pruned.CopyFrom(schema)
    declared = set(declared_identifiers(schema))
    keep = [f for f in pruned.feature if f.name not in declared]
    del pruned.feature[:]
    pruned.feature.extend(keep)
    if problem_type and problem_type != "regression":
        for f in pruned.feature:
            if f.name == label and f.type == schema_pb2.INT and \
                    f.WhichOneof("domain_info") in (None, "int_domain"):
                f.int_domain.is_categorical = True
    return pruned


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


def find_training_statistics(metadata_path: str, model_name: str, version: int) -> str | None:
    """The train split statistics of the model version that served, found in ML Metadata:
    PushedModel (pushed_version) <- Pusher <- Model <- Trainer <- Examples -> StatisticsGen."""
    import ml_metadata as mlmd

    from tandem.components.metadata import open_store

    if not os.path.exists(metadata_path):
        return None
    import logging

    absl_logger = logging.getLogger("absl")
    level = absl_logger.level
    absl_logger.setLevel(logging.WARNING)  # "MetadataStore with DB connection initialized"
    try:
        store = open_store(metadata_path, read_only=True)
    finally:
        absl_logger.setLevel(level)

    def events(execution_ids=None, artifact_ids=None):
        if execution_ids is not None:
            return store.get_events_by_execution_ids(execution_ids)
        return store.get_events_by_artifact_ids(artifact_ids)

    def pushed_as(artifact) -> tuple[str, str]:
        props = artifact.custom_properties
        if "pushed_version" not in props or "pushed_destination" not in props:
            return "", ""
        dest = props["pushed_destination"].string_value.rstrip("/")
        v = props["pushed_version"]
        return os.path.basename(os.path.dirname(dest)), str(v.string_value or v.int_value)

    pushed = [a for a in store.get_artifacts_by_type("PushedModel")
              if pushed_as(a) == (model_name, str(version))]
    if not pushed:
        return None
    out = mlmd.proto.Event.OUTPUT
    inp = mlmd.proto.Event.INPUT
    pusher = [e.execution_id for e in events(artifact_ids=[pushed[-1].id]) if e.type == out]
    model_ids = [e.artifact_id for e in events(execution_ids=pusher) if e.type == inp]
    models = [a for a in store.get_artifacts_by_id(model_ids)
              if store.get_artifact_types_by_id([a.type_id])[0].name == "Model"]
    if not models:
        return None
    trainer = [e.execution_id for e in events(artifact_ids=[models[0].id]) if e.type == out]
    example_ids = [e.artifact_id for e in events(execution_ids=trainer) if e.type == inp]
    examples = [a for a in store.get_artifacts_by_id(example_ids)
                if store.get_artifact_types_by_id([a.type_id])[0].name == "Examples"]
    if not examples:
        return None
    consumers = [e.execution_id for e in events(artifact_ids=[examples[0].id])
                 if e.type == inp]
    stat_ids = [e.artifact_id for e in events(execution_ids=consumers) if e.type == out]
    for artifact in store.get_artifacts_by_id(stat_ids):
        if store.get_artifact_types_by_id([artifact.type_id])[0].name == "ExampleStatistics":
            path = os.path.join(artifact.uri, "Split-train", "FeatureStats.pb")
            if os.path.exists(path):
                return path
    return None


def load_statistics(path: str):
    """Any TFDV statistics file as a DatasetFeatureStatisticsList: a TFX StatisticsGen
    artifact (a directory with Split-*/FeatureStats.pb; the train split), TFDV's binary
    (FeatureStats.pb, `tfdv.write_stats_binary`), text format, or TFRecord (older TFX)."""
    import tensorflow as tf
    from google.protobuf import text_format
    from tensorflow_metadata.proto.v0 import statistics_pb2

    if tf.io.gfile.isdir(path):
        splits = sorted(tf.io.gfile.glob(os.path.join(path, "Split-*")))
        if not splits:
            raise MonitorError(f"{path}: a directory without Split-*/ statistics")
        train = [s for s in splits if s.endswith("Split-train")]
        split = train[0] if train else splits[0]
        names = [n for n in ("FeatureStats.pb", "stats_tfrecord")
                 if tf.io.gfile.exists(os.path.join(split, n))]
        if not names:
            raise MonitorError(f"{split}: no FeatureStats.pb or stats_tfrecord in it")
        path = os.path.join(split, names[0])
    if not tf.io.gfile.exists(path):
        raise MonitorError(f"no statistics at {path}")
    with tf.io.gfile.GFile(path, "rb") as f:
        data = f.read()
    stats = statistics_pb2.DatasetFeatureStatisticsList()
    try:
        stats.ParseFromString(data)
        if stats.datasets:
            return stats
    except Exception:  # noqa: BLE001 - try the next format
        pass
    try:
        return text_format.Parse(data.decode("utf-8"), statistics_pb2.DatasetFeatureStatisticsList())
    except Exception:  # noqa: BLE001 - try the next format
        pass
    try:
        import tensorflow_data_validation as tfdv

        return tfdv.load_statistics(path)
    except Exception as e:  # noqa: BLE001 - none of the formats
        raise MonitorError(f"{path} is not TFDV statistics (binary, text or TFRecord): "
                           f"{str(e)[:200]}") from None


def served_model(files: list[str]) -> tuple[str, int]:
    """(model name, version) that answered the first primary records of the log."""
    from tandem.schemas.request_log import PRIMARY, read_records

    for n, record in enumerate(read_records(files)):
        if record.role == PRIMARY and record.model_version:
            return record.model_name, record.model_version
        if n > 1000:
            break
    return "", 0


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
    previous = previous_answers = None
    for i, key in enumerate(keys):
        dataset = datasets.get(key)
        answers = answer_sets.get(key)
        w = meta["windows"][key]
        entry: dict[str, Any] = {"window": key, "records": w["records"],
                                 "examples": w["examples"], "rejected": w["rejected"],
                                 "first": w["first"], "last": w["last"]}
        window_dir = os.path.join(out_dir, f"window-{i:04d}")
        tf.io.gfile.makedirs(window_dir)
        current = _one(dataset)
        anomalies = tfdv.validate_statistics(current, schema, environment=environment)
        tfdv.write_anomalies_text(anomalies, os.path.join(window_dir, "anomalies.pbtxt"))
        entry["schema_anomalies"] = {
            name: info.short_description for name, info in sorted(anomalies.anomaly_info.items())}
        entry["too_small"] = dataset.num_examples < monitor.min_examples
        if previous is not None:
            tfdv_drift = tfdv.validate_statistics(
                current, _measurable(schema, "drift_comparator", previous, dataset),
                environment=environment, previous_statistics=_one(previous))
            tfdv.write_anomalies_text(tfdv_drift, os.path.join(window_dir, "drift.pbtxt"))
            entry["drift"] = compare_datasets(previous, dataset, drift_cfg)
            entry["drift"]["tfdv"] = _tfdv_measures(tfdv_drift)
        if train is not None:
            tfdv_skew = tfdv.validate_statistics(
                _one(train), _measurable(schema, "skew_comparator", train, dataset),
                environment=environment, serving_statistics=current)
            tfdv.write_anomalies_text(tfdv_skew, os.path.join(window_dir, "skew.pbtxt"))
            entry["skew"] = compare_datasets(train, dataset, skew_cfg)
            entry["skew"]["tfdv"] = _tfdv_measures(tfdv_skew)
        if previous_answers is not None and answers is not None:
            entry["prediction_drift"] = compare_datasets(previous_answers, answers, answers_cfg)
        with tf.io.gfile.GFile(os.path.join(window_dir, SUMMARY), "w") as f:
            f.write(json.dumps(entry, indent=2, sort_keys=True) + "\n")
        summary["windows"].append(entry)
        progress(f"  window {key}: {w['records']:,} requests, {dataset.num_examples:,} examples"
                 + ("" if not entry["too_small"] else " (too small to judge)")
                 + _alert_text(entry))
        if not entry["too_small"]:
            previous = dataset
            previous_answers = answers if answers is not None else previous_answers
    summary["drift_features"] = sorted({f for w in summary["windows"]
                                        for f in w.get("drift", {}).get("alerts", [])})
    summary["skew_features"] = sorted({f for w in summary["windows"]
                                       for f in w.get("skew", {}).get("alerts", [])})
    summary["schema_anomalies"] = sorted({f for w in summary["windows"]
                                          for f in w["schema_anomalies"]})
    summary["prediction_drift_features"] = sorted(
        {f for w in summary["windows"] for f in w.get("prediction_drift", {}).get("alerts", [])})
    summary["prediction_drift"] = _prediction_drift(summary, config, answer_sets)
    summary["label_drift"] = _label_drift(summary, config, kind) if label_map is not None \
        else None
    training_examples = training_examples or monitor.training_examples
    summary["feature_value_skew"] = None
    if training_examples:
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
    summary["seconds"] = round(time.monotonic() - start, 2)
    with tf.io.gfile.GFile(os.path.join(out_dir, SUMMARY), "w") as f:
        f.write(json.dumps(summary, indent=2, sort_keys=True) + "\n")
    if render is not None:
        with tf.io.gfile.GFile(os.path.join(out_dir, HTML), "w") as f:
            f.write(render(summary, stats, train, schema))
        summary["report"] = os.path.join(out_dir, HTML)
    _alert(summary, monitor, config)
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


def _alert_text(entry: dict) -> str:
    parts = []
    for kind in ("drift", "skew", "prediction_drift"):
        names = entry.get(kind, {}).get("alerts", [])
        if names:
            parts.append(f"{kind.replace('_', ' ')}: {', '.join(names)}")
    if entry["schema_anomalies"]:
        parts.append(f"schema: {', '.join(sorted(entry['schema_anomalies']))}")
    return ("; " + "; ".join(parts)) if parts else ""


def _alert(summary: dict, monitor, config) -> None:
    """Drift and skew as Prometheus metrics (a textfile for node_exporter's collector) and a
    webhook POST; both optional."""
    if monitor.textfile:
        judged = [w for w in summary["windows"] if not w["too_small"]]
        last = judged[-1] if judged else {}
        families = {  # family: (the window's judgment, help)
            "tandem_monitor_drift": (
                "drift", "1 when the feature drifted in the latest judged window"),
            "tandem_monitor_drift_psi": (
                "drift", "the feature's PSI against the previous window"),
            "tandem_monitor_skew": ("skew", "1 when the feature is skewed against training"),
            "tandem_monitor_skew_psi": (
                "skew", "the feature's PSI against the training statistics"),
            "tandem_monitor_prediction_drift": (
                "prediction_drift", "1 when the model's answer (feature: the answer's "
                "column) drifted in the latest judged window"),
            "tandem_monitor_prediction_drift_psi": (
                "prediction_drift", "the answer column's PSI against the previous window"),
        }
        lines = []
        for family, (kind, text) in families.items():
            lines += [f"# HELP {family} {text}", f"# TYPE {family} gauge"]
            for name, m in sorted(last.get(kind, {}).get("features", {}).items()):
                labels = f'{{model="{config.model_name}",feature="{name}"}}'
                if family.endswith("_psi"):
                    if m["psi"]["value"] is not None:
                        lines.append(f"{family}{labels} {m['psi']['value']}")
                else:
                    lines.append(f"{family}{labels} {int(m['alert'])}")
        os.makedirs(os.path.dirname(os.path.abspath(monitor.textfile)), exist_ok=True)
        # the collector never reads a half-written file
        atomic_write(monitor.textfile, "\n".join(lines) + "\n")
    if monitor.webhook and (summary["drift_features"] or summary["skew_features"]
                            or summary["prediction_drift_features"]):
        import urllib.request

        body = json.dumps({"model": config.model_name, "drift": summary["drift_features"],
                           "skew": summary["skew_features"],
                           "prediction_drift": summary["prediction_drift_features"],
                           "report": summary.get("report"), "logs": summary["logs"]}).encode()
        request = urllib.request.Request(monitor.webhook, data=body, method="POST",
                                         headers={"Content-Type": "application/json"})
        try:
            urllib.request.urlopen(request, timeout=10).close()
            summary["webhook"] = "sent"
        except OSError as e:
            summary["webhook"] = f"failed: {e}"
