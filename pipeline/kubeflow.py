"""Kubeflow runner: compiles the same pipeline to a Kubeflow Pipelines (v2) JSON spec."""

from __future__ import annotations

import dataclasses
import json
import os

from tandem.pipeline.config import PipelineConfig

DEFAULT_IMAGE = "tandem-pipeline:latest"  # built from deploy/pipeline.Dockerfile


def compile_dag(pipeline, out_path: str, image: str, modules: dict[str, str]) -> dict:
    """Write a TFX pipeline's KubeflowV2DagRunner spec to out_path; returns its summary:
    component ids and the module code each executor loads (which the image must contain)."""
    from tfx.orchestration.kubeflow.v2.kubeflow_v2_dag_runner import (
        KubeflowV2DagRunner,
        KubeflowV2DagRunnerConfig,
    )

    runner = KubeflowV2DagRunner(
        config=KubeflowV2DagRunnerConfig(default_image=image),
        output_dir=os.path.dirname(os.path.abspath(out_path)),
        output_filename=os.path.basename(out_path),
    )
    runner.run(pipeline, write_out=True)
    with open(out_path) as f:
        spec = json.load(f)
    return {"path": out_path, "image": image, "modules": modules,
            "components": sorted(spec["pipelineSpec"]["root"]["dag"]["tasks"])}


def compile_kubeflow(
    config: PipelineConfig,
    out_path: str,
    image: str = DEFAULT_IMAGE,
    pipeline_root: str | None = None,
    schema_uri: str | None = None,
) -> dict:
    """Write the KubeflowV2DagRunner pipeline spec to out_path and return a summary:
    component ids and the module code each executor loads (which the image must contain)."""
    from tandem.pipeline.pipeline import PREPROCESSING_FN, RUN_FN, create_pipeline

    if pipeline_root:
        config = dataclasses.replace(config, output_dir=pipeline_root.rstrip("/"))
    # Kubeflow brings its own ML Metadata.
    pipeline = create_pipeline(config, config.schema, schema_uri=schema_uri, local_metadata=False)
    return compile_dag(pipeline, out_path, image, {
        "Transform": PREPROCESSING_FN, "Trainer": RUN_FN,
        "ValidationGate": "tandem.components.validation_gate.ValidationGate",
        "ModelCheckGate": "tandem.components.validation_gate.ModelCheckGate",
        "SliceGate": "tandem.components.slice_gate.SliceGate",
        "Trainer executor": "tandem.components.trainer_executor.TrainerExecutor"})
