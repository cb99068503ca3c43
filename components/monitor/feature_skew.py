"""Monitor: feature-value skew, the logged examples joined with the training examples by id.

A second Beam pass, run only when training examples are given: TFDV's DetectFeatureSkew
says, per feature, how often the same id was served a different value than it was trained on.
"""

from __future__ import annotations

import json
import os
from typing import Any

from tandem.components.monitor.errors import MonitorError
from tandem.schemas.files import gzip_by_name


def feature_value_skew(files: list[str], training_examples: str, id_feature: str,
                       ignore: list[str], out_dir: str,
                       beam_args: list[str] | None) -> list[dict[str, Any]]:
    """TFDV's DetectFeatureSkew: logged examples joined with training examples by
    `id_feature`; per feature, how many joined pairs hold a different value."""
    import apache_beam as beam
    import tensorflow as tf
    import tensorflow_data_validation as tfdv
    from google.protobuf import json_format
    from tensorflow.core.example import example_pb2

    from tandem.components.beam_runtime import pipeline_options
    from tandem.schemas.log_batches import read_decoded
    from tandem.schemas.request_log import PRIMARY

    train_files = sorted(tf.io.gfile.glob(training_examples))
    if not train_files:
        raise MonitorError(f"no training examples match {training_examples}")
    path = os.path.join(out_dir, "feature_skew.json")

    def logged(files_):
        for record in read_decoded(files_):
            if record.role == PRIMARY:
                for example in record.examples():
                    yield example_pb2.Example.FromString(example)

    def write(results):
        rows = sorted((json_format.MessageToDict(r, preserving_proto_field_name=True)
                       for r in results), key=lambda r: r.get("feature_name", ""))
        with tf.io.gfile.GFile(path, "w") as f:
            f.write(json.dumps(rows, indent=2, sort_keys=True) + "\n")

    compression = "GZIP" if gzip_by_name(train_files[0]) else "UNCOMPRESSED"
    options = pipeline_options(beam_args)
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
