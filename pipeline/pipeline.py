"""Pipeline definition: create_pipeline(config) wires the TFX DAG in data-flow order."""

from __future__ import annotations

from tfx import v1 as tfx
from tfx.proto import example_gen_pb2

from components.validation_gate import ValidationGate
from pipeline.beam import beam_pipeline_args
from pipeline.config import STAGES, PipelineConfig


def _example_gen(config: PipelineConfig):
    input_config = example_gen_pb2.Input(
        splits=[example_gen_pb2.Input.Split(name="single_split", pattern=config.data.pattern)]
    )
    output_config = example_gen_pb2.Output(
        split_config=example_gen_pb2.SplitConfig(
            splits=[
                example_gen_pb2.SplitConfig.Split(
                    name="train", hash_buckets=config.split.train_buckets
                ),
                example_gen_pb2.SplitConfig.Split(
                    name="eval", hash_buckets=config.split.eval_buckets
                ),
            ]
        )
    )
    gen = tfx.components.CsvExampleGen if config.data.format == "csv" else (
        tfx.components.ImportExampleGen
    )
    return gen(
        input_base=config.data.location, input_config=input_config, output_config=output_config
    )


def create_pipeline(
    config: PipelineConfig, schema_file: str, until: str = STAGES[-1]
) -> tfx.dsl.Pipeline:
    """The tandem DAG for one dataset. `schema_file` is the curated schema to import
    (the runner passes a content-addressed copy so that editing the schema reruns
    validation instead of hitting the cache)."""
    if until not in STAGES:
        raise ValueError(f"unknown stage {until!r}; choose from {', '.join(STAGES)}")

    # Ingest: each new span of raw data becomes tf.Examples split into train/eval.
    example_gen = _example_gen(config)
    # Describe the data: TFDV statistics per split.
    statistics_gen = tfx.components.StatisticsGen(examples=example_gen.outputs["examples"])
    # The contract: the curated schema, imported as is (never re-inferred).
    schema_gen = tfx.components.ImportSchemaGen(schema_file=schema_file)
    # Check the data against the contract.
    example_validator = tfx.components.ExampleValidator(
        statistics=statistics_gen.outputs["statistics"], schema=schema_gen.outputs["schema"]
    )
    # Stop here when anything is anomalous; everything downstream waits on the gate.
    validation_gate = ValidationGate(anomalies=example_validator.outputs["anomalies"])

    components = [example_gen, statistics_gen, schema_gen, example_validator, validation_gate]
    return tfx.dsl.Pipeline(
        pipeline_name=f"tandem-{config.name}",
        pipeline_root=config.pipeline_root,
        components=components,
        enable_cache=True,
        metadata_connection_config=tfx.orchestration.metadata.sqlite_metadata_connection_config(
            config.metadata_path
        ),
        beam_pipeline_args=beam_pipeline_args(config),
    )
