"""TrafficMonitor's executor: run the monitor, then lay its outputs out the TFX way."""

from __future__ import annotations

import dataclasses
import json
import os
from types import SimpleNamespace
from typing import Any

import tensorflow as tf
from tfx.dsl.components.base import base_beam_executor
from tfx.types import artifact_utils
from tfx.utils import import_utils, io_utils

# The pipeline config's fields the monitor reads (components/monitor/job.py's `config.*`).
SETTINGS = ("name", "model_name", "label", "problem_type", "metadata_path")


def settings_json(config) -> str:
    """What the monitor needs of a PipelineConfig, as the `settings` exec property: the DAG
    hands its executor settings, as the Trainer gets its custom_config, and the executor
    never loads the pipeline's config itself."""
    return json.dumps({**{k: getattr(config, k) for k in SETTINGS},
                       "monitor": dataclasses.asdict(config.monitor)}, sort_keys=True)


def _settings(text: str, schema: str) -> SimpleNamespace:
    """The settings read back, with the attributes run_monitor reads of a PipelineConfig."""
    raw = json.loads(text)
    section = raw["monitor"]
    monitor = SimpleNamespace(**{
        **section, "drift": SimpleNamespace(**section["drift"]),
        "skew": SimpleNamespace(**section["skew"]),
        "features": {n: SimpleNamespace(**t) for n, t in section["features"].items()}})
    return SimpleNamespace(**{**raw, "monitor": monitor, "schema": schema})


class Executor(base_beam_executor.BaseBeamExecutor):
    def Do(self, input_dict: dict[str, list], output_dict: dict[str, list],
           exec_properties: dict[str, Any]) -> None:
        from tensorflow_metadata.proto.v0 import statistics_pb2

        from tandem.components.monitor.job import STATISTICS, run_monitor

        schema_dir = artifact_utils.get_single_uri(input_dict["schema"])
        schema_file = io_utils.get_only_uri_in_dir(schema_dir)
        config = _settings(exec_properties["settings"], schema_file)
        training = None
        if input_dict.get("training_statistics"):
            # An ExampleStatistics artifact (its train split) or a statistics file.
            training = artifact_utils.get_single_uri(input_dict["training_statistics"])
        logs = artifact_utils.get_single_uri(input_dict["request_logs"])
        render = exec_properties.get("render")
        if render:  # the page's renderer, by dotted name (pipeline/traffic_checks.py)
            render = import_utils.import_func_from_module(*render.rsplit(".", 1))
        anomalies = artifact_utils.get_single_instance(output_dict["anomalies"])
        statistics = artifact_utils.get_single_instance(output_dict["statistics"])
        summary = run_monitor(logs, config, anomalies.uri, training_statistics=training,
                              beam_args=self._beam_pipeline_args or None,
                              render=render or None)
        # One split per window: statistics (FeatureStats.pb) and anomalies (SchemaDiff.pb).
        with tf.io.gfile.GFile(os.path.join(anomalies.uri, STATISTICS), "rb") as f:
            windows = statistics_pb2.DatasetFeatureStatisticsList.FromString(f.read())
        by_name = {d.name: d for d in windows.datasets}
        splits = []
        import tensorflow_data_validation as tfdv

        for i, entry in enumerate(summary["windows"]):
            split = f"window-{i:04d}"
            splits.append(split)
            one = statistics_pb2.DatasetFeatureStatisticsList()
            one.datasets.add().CopyFrom(by_name[entry["window"]])
            tf.io.gfile.makedirs(os.path.join(statistics.uri, f"Split-{split}"))
            with tf.io.gfile.GFile(os.path.join(statistics.uri, f"Split-{split}",
                                                "FeatureStats.pb"), "wb") as f:
                f.write(one.SerializeToString())
            window_dir = os.path.join(anomalies.uri, split)
            source = os.path.join(window_dir, "drift.pbtxt")
            if not tf.io.gfile.exists(source):
                source = os.path.join(window_dir, "anomalies.pbtxt")
            found = tfdv.load_anomalies_text(source)
            tf.io.gfile.makedirs(os.path.join(anomalies.uri, f"Split-{split}"))
            with tf.io.gfile.GFile(os.path.join(anomalies.uri, f"Split-{split}",
                                                "SchemaDiff.pb"), "wb") as f:
                f.write(found.SerializeToString())
        names = json.dumps(splits)
        statistics.split_names = names
        anomalies.split_names = names
        anomalies.set_int_custom_property(
            "drift_or_skew_found", int(bool(summary["drift_features"] or
                                            summary["skew_features"])))
        anomalies.set_string_custom_property("drift_features",
                                             ",".join(summary["drift_features"]))
        anomalies.set_string_custom_property("skew_features",
                                             ",".join(summary["skew_features"]))
        anomalies.set_string_custom_property("prediction_drift_features",
                                             ",".join(summary["prediction_drift_features"]))
        anomalies.set_string_custom_property("report", summary.get("report", ""))
