"""Monitor: the statistics a served model was trained on, found by lineage or read from a file.

The log names the model version that answered; ML Metadata leads from that pushed version
back to its Trainer's examples and their StatisticsGen output, the skew baseline.
"""

from __future__ import annotations

import os

from tandem.components.monitor.errors import MonitorError


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
