"""Monitor, first stage: the request log cut into windows, and TFDV statistics per window.

One Beam pass reads every log file in order, keys each primary record's examples (with their
joined labels) and the model's answers by window, and hands both to TFDV's sliced statistics;
everything the monitor judges afterwards reads only these statistics protos.
"""

from __future__ import annotations

import json
import os
import time
from typing import Any

from tandem.components.monitor.errors import MonitorError
from tandem.components.monitor.sources import source_label, window_key
from tandem.schemas.contracts import is_deprecated
from tandem.schemas.identifiers import declared_identifiers

STATISTICS = "statistics.pb"
ANSWER_STATISTICS = "answer_statistics.pb"
CHUNK = 1000  # examples per RecordBatch


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
    from tandem.schemas.log_batches import read_decoded
    from tandem.schemas.request_log import PRIMARY, ReadStats

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
            first_source = None  # the log's first snapshot; windows of others are apart
            for record in read_decoded(files, stats):
                if record.role != PRIMARY:
                    skipped["shadow_records"] += 1
                    continue
                if window_s:
                    start = int(record.timestamp // window_s * window_s)
                    key = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(start))
                else:
                    key = f"{n // window_records:05d}"
                source = source_label(record.sources)
                first_source = first_source or source or None
                key = window_key(key, source, first_source)
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
                                             "last": record.timestamp, "rejected": 0,
                                             "sources": {}})
                if source:
                    w["sources"][source] = w["sources"].get(source, 0) + len(examples)
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
    from tensorflow_data_validation.statistics import stats_impl
    from tensorflow_metadata.proto.v0 import statistics_pb2

    from tandem.components.beam_runtime import pipeline_options

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

    options = pipeline_options(beam_args)
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


def monitored_schema(schema, label: str = "", problem_type: str = ""):
    """The schema without the identifiers it declares (unique by design) and the features it
    deprecates or disables (`is_deprecated`: TFDV leaves them alone; `schema propose` disables
    a column with no values, which must not alarm when it fills). They are neither decoded
    nor described per window: unique strings are the costliest statistics TFDV keeps
    (top-k and distinct sketches over every value), and an id never drifts. A classifier's
    integer label is a class id: it is described, and its drift judged, as a category."""
    from tensorflow_metadata.proto.v0 import schema_pb2

    pruned = type(schema)()
    pruned.CopyFrom(schema)
    declared = set(declared_identifiers(schema))
    keep = [f for f in pruned.feature if f.name not in declared and not is_deprecated(f)]
    del pruned.feature[:]
    pruned.feature.extend(keep)
    if problem_type and problem_type != "regression":
        for f in pruned.feature:
            if f.name == label and f.type == schema_pb2.INT and \
                    f.WhichOneof("domain_info") in (None, "int_domain"):
                f.int_domain.is_categorical = True
    return pruned
