"""LogExampleGen's executor: a Beam job that joins the request log with late labels and
writes the span the TFX way (Split-train/, Split-eval/ GZIP TFRecords of tf.Examples)."""

from __future__ import annotations

import dataclasses
import json
import os
import time
from typing import Any

import tensorflow as tf
from tfx.dsl.components.base import base_beam_executor
from tfx.types import artifact_utils

SOURCE_FILE = "source.json"  # what the span was built from, beside the splits


class Executor(base_beam_executor.BaseBeamExecutor):
    def Do(self, input_dict: dict[str, list], output_dict: dict[str, list],
           exec_properties: dict[str, Any]) -> None:
        import apache_beam as beam

        from tandem.components.log_example_gen.join import (
            JoinStats,
            first_places,
            join_records,
            split_of,
        )
        from tandem.schemas.labels import LabelStats, check_kind, read_labels
        from tandem.schemas.log_batches import read_decoded
        from tandem.schemas.request_log import ReadStats, expand

        logs = artifact_utils.get_single_uri(input_dict["request_logs"])
        labels_uri = artifact_utils.get_single_uri(input_dict["labels"])
        label = exec_properties["label"]
        kind = check_kind(exec_properties["label_kind"])
        delay = float(exec_properties.get("label_delay_s") or 7 * 86400)
        train_buckets = int(exec_properties.get("train_buckets") or 2)
        eval_buckets = int(exec_properties.get("eval_buckets") or 1)
        files = expand(logs)
        label_stats = LabelStats()
        labels = read_labels(labels_uri, label_stats, kind=kind)
        examples = artifact_utils.get_single_instance(output_dict["examples"])
        out = examples.uri

        def joined(all_files):
            read, stats = ReadStats(), JoinStats()
            first = first_places(read_decoded(all_files, ReadStats()))
            yield from join_records(read_decoded(all_files, read), labels,
                                    label, kind, delay, stats, first)
            yield beam.pvalue.TaggedOutput("stats", {
                **dataclasses.asdict(stats), "torn": read.torn, "corrupt": read.corrupt,
                "unreadable": read.unreadable, "files": read.files})

        with self._make_beam_pipeline() as p:
            rows = (p | "LogFiles" >> beam.Create([files])
                    | "JoinLabels" >> beam.FlatMap(joined).with_outputs("stats", main="rows"))
            for split in ("train", "eval"):
                _ = (rows.rows
                     | f"Only{split}" >> beam.Filter(
                         lambda r, s=split: split_of(r[0], train_buckets, eval_buckets) == s)
                     | f"Bytes{split}" >> beam.Map(lambda r: r[1])
                     | f"Write{split}" >> beam.io.WriteToTFRecord(
                         os.path.join(out, f"Split-{split}", "data_tfrecord"),
                         file_name_suffix=".gz"))
            times = (rows.rows | "Times" >> beam.Map(lambda r: r[2])
                     | "Window" >> beam.combiners.Top.Of(1)
                     | "Latest" >> beam.Map(lambda t: t[0] if t else 0.0))
            first = (rows.rows | "Times2" >> beam.Map(lambda r: -r[2])
                     | "Window2" >> beam.combiners.Top.Of(1)
                     | "Earliest" >> beam.Map(lambda t: -t[0] if t else 0.0))

            def write_source(stats_list, latest, earliest):
                stats = stats_list[0] if stats_list else {}
                with tf.io.gfile.GFile(os.path.join(out, SOURCE_FILE), "w") as f:
                    f.write(json.dumps({"logs": logs, "log_files": files, "labels": labels_uri,
                                        "join": stats,
                                        "labels_read": dataclasses.asdict(label_stats),
                                        "window": [earliest, latest]},
                                       indent=2, sort_keys=True))

            _ = (rows.stats | "StatsList" >> beam.combiners.ToList()
                 | "WriteSource" >> beam.Map(write_source,
                                             latest=beam.pvalue.AsSingleton(times),
                                             earliest=beam.pvalue.AsSingleton(first)))
        with tf.io.gfile.GFile(os.path.join(out, SOURCE_FILE)) as f:
            source = json.load(f)
        if not source["join"].get("joined"):
            raise ValueError(f"no example of {logs} has a label in {labels_uri} "
                             f"({source['join']})")
        start = source["window"][0]
        span = int(time.strftime("%Y%m%d", time.gmtime(start))) if start else 0
        examples.split_names = artifact_utils.encode_split_names(["train", "eval"])
        examples.span = span
        examples.set_int_custom_property("span", span)
        examples.set_string_custom_property(
            "input_fingerprint", f"request_log:{len(files)} file(s),labels:{labels_uri}")
        examples.set_string_custom_property("tandem.source", json.dumps({
            "logs": logs, "log_files": [os.path.basename(f) for f in files],
            "labels": labels_uri, "join": source["join"]}, sort_keys=True))
