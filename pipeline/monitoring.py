"""The monitoring pipeline: request logs -> per-window statistics -> drift and skew check.

    Importer(request logs), Importer(schema)[, Importer(training statistics)]
        -> TrafficMonitor -> ExampleStatistics (a split per window), ExampleAnomalies

Locally it runs with LocalDagRunner (`tandem monitor pipeline`); `tandem compile monitoring
--kubeflow OUT.json ...` compiles the same DAG for Kubeflow.
"""

from __future__ import annotations

import os

from tandem.components import tfx_api as tfx
from tandem.components.metadata import connection_config
from tandem.components.monitor.component import TrafficMonitor
from tandem.components.monitor.executor import settings_json
from tandem.pipeline.config import PipelineConfig
from tandem.pipeline.traffic_checks import MONITOR_RENDER

PIPELINE_NAME = "tandem-monitoring"


def create_monitoring_pipeline(config: PipelineConfig, logs: str, schema: str,
                               pipeline_root: str, training_statistics: str | None = None,
                               beam_args: list[str] | None = None,
                               metadata_path: str | None = None) -> tfx.dsl.Pipeline:
    """`config` is the loaded pipeline config (its `monitor:` section and names travel to the
    executor as JSON); `schema` the curated schema file's directory or file (as the executor
    sees it); `training_statistics` an ExampleStatistics artifact's uri (Split-train/
    inside)."""
    logs_in = tfx.dsl.Importer(source_uri=logs,
                               artifact_type=tfx.types.standard_artifacts.Examples,
                               reimport=False).with_id("request_logs")
    schema_dir = schema if not schema.endswith(".pbtxt") else os.path.dirname(schema)
    schema_in = tfx.dsl.Importer(source_uri=schema_dir,
                                 artifact_type=tfx.types.standard_artifacts.Schema,
                                 reimport=False).with_id("schema")
    components = [logs_in, schema_in]
    training = None
    if training_statistics:
        stats_in = tfx.dsl.Importer(
            source_uri=training_statistics,
            artifact_type=tfx.types.standard_artifacts.ExampleStatistics,
            properties={"split_names": '["train"]'}, reimport=False).with_id(
                "training_statistics")
        components.append(stats_in)
        training = stats_in.outputs["result"]
    monitor = TrafficMonitor(request_logs=logs_in.outputs["result"],
                             schema=schema_in.outputs["result"],
                             settings=settings_json(config), training_statistics=training,
                             render=MONITOR_RENDER)
    components.append(monitor)
    return tfx.dsl.Pipeline(
        pipeline_name=PIPELINE_NAME, pipeline_root=pipeline_root, components=components,
        enable_cache=False,  # a log directory keeps growing: judge it again
        metadata_connection_config=(
            connection_config(metadata_path)
            if metadata_path else None),
        beam_pipeline_args=beam_args if beam_args is not None
        else ["--direct_running_mode=in_memory"])


def compile_monitoring_kubeflow(out_path: str, config: PipelineConfig, logs: str, schema: str,
                                pipeline_root: str, image: str,
                                training_statistics: str | None = None) -> dict:
    from tandem.pipeline.beam import with_runner_defaults

    pipeline = create_monitoring_pipeline(config, logs, schema, pipeline_root,
                                          training_statistics,
                                          beam_args=with_runner_defaults(config.beam.extra_args))
    from tandem.pipeline.kubeflow import compile_dag

    return compile_dag(pipeline, out_path, image,
                       {"TrafficMonitor": "tandem.components.monitor.executor.Executor"})
