"""The promotion pipeline: a candidate is judged on the traffic the serving model answered.

    Importer(request logs) ─┐
    Importer(baseline) ─────┼─> ShadowValidator ─> blessing (SHADOW_BLESSED / NOT_BLESSED)
    Importer(candidate) ────┘

The blessing is a ModelBlessing with the int property `blessed`, so TFX's Pusher (or a
promotion step) can require it. A feature-source snapshot is judged the same way, by the
sibling SourceValidator (the logged traffic re-decorated from the snapshot), into a
FeatureSourceBlessing (`create_promotion_pipeline(..., source=SourceCheck(...))`). Locally
it runs with LocalDagRunner and ML Metadata on SQLite; `tandem compile promotion --kubeflow
OUT.json ...` (with `--candidate-features` for a snapshot) compiles the same DAG for Kubeflow.
"""

from __future__ import annotations

import dataclasses
import json
import os

from tandem.components import tfx_api as tfx
from tandem.components.metadata import connection_config, open_store
from tandem.components.shadow_validator.component import ShadowValidator
from tandem.pipeline.beam import run_local_dag
from tandem.pipeline.traffic_checks import REPLAY_RENDER

PIPELINE_NAME = "tandem-promotion"
SOURCE_PIPELINE_NAME = "tandem-source-promotion"
EXECUTORS = {"ShadowValidator": "tandem.components.shadow_validator.executor.Executor",
             "SourceValidator": "tandem.components.source_validator.executor.Executor"}


@dataclasses.dataclass(frozen=True)
class SourceCheck:
    """A feature-source snapshot to judge instead of only a model: the candidate snapshot and
    the gateway config whose joins and source served the logs (paths as the runner sees
    them)."""

    candidate_features: str
    gateway_config: str


def _validator(source: SourceCheck | None, models: dict, config: str):
    """ShadowValidator for a model, SourceValidator for a snapshot."""
    if source is None:
        return ShadowValidator(**models, config=config, render=REPLAY_RENDER)
    from tandem.components.source_validator.component import SourceValidator
    from tandem.pipeline.feature_checks import PREPARE

    return SourceValidator(**models, candidate_features=source.candidate_features,
                           gateway_config=source.gateway_config, prepare=PREPARE,
                           config=config, render=REPLAY_RENDER)


def create_promotion_pipeline(baseline: str, candidate: str, logs: str, pipeline_root: str,
                              replay_config: dict | None = None,
                              beam_args: list[str] | None = None,
                              metadata_path: str | None = None,
                              name: str | None = None,
                              source: SourceCheck | None = None) -> tfx.dsl.Pipeline:
    """`baseline` is the version that served the logs, `candidate` the model to judge (each a
    SavedModel version directory, or the directory holding versions), `logs` the directory
    of request-log files. `metadata_path` puts ML Metadata on SQLite (None on Kubeflow).
    With `source`, the snapshot is judged (with `candidate`, which may be `baseline`)."""
    logs_importer = tfx.dsl.Importer(
        source_uri=logs, artifact_type=tfx.types.standard_artifacts.Examples,
        reimport=False).with_id("request_logs")
    baseline_importer = tfx.dsl.Importer(
        source_uri=baseline, artifact_type=tfx.types.standard_artifacts.Model,
        reimport=False).with_id("baseline_model")
    candidate_importer = tfx.dsl.Importer(
        source_uri=candidate, artifact_type=tfx.types.standard_artifacts.Model,
        reimport=False).with_id("candidate_model")
    validator = _validator(source, {
        "baseline_model": baseline_importer.outputs["result"],
        "candidate_model": candidate_importer.outputs["result"],
        "request_logs": logs_importer.outputs["result"]},
        json.dumps(replay_config or {}, sort_keys=True))
    return tfx.dsl.Pipeline(
        pipeline_name=name or (PIPELINE_NAME if source is None else SOURCE_PIPELINE_NAME),
        pipeline_root=pipeline_root,
        components=[logs_importer, baseline_importer, candidate_importer, validator],
        enable_cache=False,  # new traffic under the same log directory must be judged again
        metadata_connection_config=(
            connection_config(metadata_path)
            if metadata_path else None),
        beam_pipeline_args=beam_args or ["--direct_running_mode=in_memory"],
    )


def run_promotion_pipeline(baseline: str, candidate: str, logs: str, out_dir: str,
                           replay_config: dict | None = None,
                           beam_args: list[str] | None = None,
                           source: SourceCheck | None = None) -> dict:
    """Runs the promotion pipeline locally; returns the blessing artifact's uri and verdict
    (a snapshot's, with `source`)."""
    root = os.path.abspath(out_dir)
    metadata = os.path.join(root, "metadata.sqlite")
    pipeline = create_promotion_pipeline(os.path.abspath(baseline), os.path.abspath(candidate),
                                         os.path.abspath(logs), os.path.join(root, "pipeline"),
                                         replay_config, beam_args=beam_args,
                                         metadata_path=metadata, source=source)
    run_local_dag(pipeline)
    store = open_store(metadata)
    kind = "ModelBlessing" if source is None else "tandem.FeatureSourceBlessing"
    blessings = sorted(store.get_artifacts_by_type(kind), key=lambda a: a.id)
    latest = blessings[-1]
    out = {"uri": latest.uri, "blessed": latest.custom_properties["blessed"].int_value,
           "report": latest.custom_properties["report"].string_value}
    if source is not None:
        out["blamed"] = latest.custom_properties["blamed"].string_value
    return out


def compile_promotion_kubeflow(out_path: str, baseline: str, candidate: str, logs: str,
                               pipeline_root: str, image: str,
                               replay_config: dict | None = None,
                               beam_args: list[str] | None = None,
                               source: SourceCheck | None = None) -> dict:
    """The promotion pipeline as a Kubeflow Pipelines (v2) spec."""
    pipeline = create_promotion_pipeline(baseline, candidate, logs, pipeline_root,
                                         replay_config, beam_args=beam_args or [],
                                         source=source)
    from tandem.pipeline.kubeflow import compile_dag

    validator = "ShadowValidator" if source is None else "SourceValidator"
    return compile_dag(pipeline, out_path, image, {validator: EXECUTORS[validator]})
