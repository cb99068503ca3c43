"""Pipeline definition: create_pipeline(config) wires the TFX DAG in data-flow order."""

from __future__ import annotations

import dataclasses
import hashlib
import json

from tfx.proto import example_gen_pb2

from tandem.components import tfx_api as tfx
from tandem.components.baseline import LatestBlessedBaselineStrategy
from tandem.components.evaluator import Evaluator
from tandem.components.features import default_skip, feature_plan, model_features
from tandem.components.metadata import connection_config
from tandem.components.trainer_executor import Trainer
from tandem.components.validation_gate import ModelCheckGate, ValidationGate
from tandem.pipeline.beam import beam_pipeline_args
from tandem.pipeline.config import STAGES, ConfigError, PipelineConfig
from tandem.pipeline.evaluation import eval_config
from tandem.schemas import load_schema

# Executors load module code by dotted name; wiring never imports TensorFlow model code.
PREPROCESSING_FN = "tandem.components.transform.preprocessing_fn"
RUN_FN = "tandem.components.trainer.run_fn"


def _log_example_gen(config: PipelineConfig, label_kind: str) -> list:
    """Importers for the request log and the labels, and LogExampleGen joining them; the
    labels are read as `label_kind`, the label's type in the schema."""
    from tandem.components.log_example_gen.component import LogExampleGen

    logs = tfx.dsl.Importer(source_uri=config.data.location,
                            artifact_type=tfx.types.standard_artifacts.Examples,
                            reimport=False).with_id("request_logs")
    from tfx.types.standard_artifacts import ExternalArtifact

    labels = tfx.dsl.Importer(source_uri=config.data.labels, artifact_type=ExternalArtifact,
                              reimport=False).with_id("labels")
    gen = LogExampleGen(request_logs=logs.outputs["result"], labels=labels.outputs["result"],
                        label=config.label,
                        label_kind=label_kind,
                        label_delay_s=config.data.label_delay_s,
                        train_buckets=config.split.train_buckets,
                        eval_buckets=config.split.eval_buckets)
    return [logs, labels, gen]


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


def statistics_options():
    """TFDV options of the pipeline's StatisticsGen; the monitor computes windows alike."""
    import tensorflow_data_validation as tfdv

    return tfdv.StatsOptions(num_quantiles_histogram_buckets=100, num_histogram_buckets=20)


def transform_config(plan: dict) -> dict:
    """What Transform needs at run time: the feature plan and nothing else, so that a change
    to the model or the evaluation never invalidates Transform's cache."""
    return {"plan": plan}


def trainer_config(config: PipelineConfig, plan: dict) -> dict:
    """What the Trainer needs at run time, as plain JSON: what the model is trained from and
    nothing else, so that changing a threshold re-evaluates the same model instead of
    training a new one. `config_fingerprint` (in the build record) hashes exactly this."""
    model = config.model
    trainer = {
        "plan": plan,
        "model_name": config.model_name,
        "deciding_metric": config.deciding_metric,
        "hyperparameters": {
            "hidden_units": list(model.hidden_units),
            "crosses": [list(c) for c in model.crosses],
            "embedding_dim": model.embedding_dim,
            "learning_rate": model.learning_rate,
            "batch_size": model.batch_size,
            "epochs": model.epochs,
            "max_steps": model.max_steps,
            "early_stopping_patience": model.early_stopping_patience,
            "seed": model.seed,
        },
        "select": model.select,
        # The simplest model must be adequate: it meets the Evaluator's value bar.
        "threshold": config.evaluation.threshold,
        "checks": dataclasses.asdict(config.checks),
    }
    blob = json.dumps(trainer, sort_keys=True).encode()
    trainer["config_fingerprint"] = hashlib.sha256(blob).hexdigest()[:16]
    return trainer


def create_pipeline(
    config: PipelineConfig,
    schema_file: str,
    until: str = STAGES[-1],
    schema_uri: str | None = None,
    local_metadata: bool = True,
) -> tfx.dsl.Pipeline:
    """The tandem DAG for one dataset, through stage `until`.

    `schema_file` is the curated schema (the runner passes a content-addressed copy, so
    editing the schema reruns validation instead of hitting the cache); `schema_uri` is
    where ImportSchemaGen reads it when that differs (a path inside a Kubeflow image).
    `local_metadata` puts ML Metadata on SQLite under the output directory."""
    if until not in STAGES:
        raise ValueError(f"unknown stage {until!r}; choose from {', '.join(STAGES)}")
    last = STAGES.index(until)
    options = {name: opts.as_options() for name, opts in config.features.items()}
    schema = load_schema(schema_file)
    try:
        plan = feature_plan(schema, config.label, config.problem_type, options)
    except ValueError as e:  # the config's features against the schema: a bad input, exit 2
        raise ConfigError(str(e)) from None
    if not model_features(plan) and last >= STAGES.index("transform"):
        # Said now, not by the Trainer after ExampleGen and Transform ran.
        left_out = [f"{f.name} ({default_skip(f) or 'kind: skip'})" for f in schema.feature
                    if f.name != config.label]
        raise ConfigError("no model inputs: every feature is left out of the model: "
                         f"{', '.join(left_out) or 'the schema has only the label'}; name a "
                         "kind in the config's features for an identifier, set the "
                         "lifecycle_stage in the schema of a column that has values now, or "
                         "add feature columns")

    # Ingest: each new span of raw data becomes tf.Examples split into train/eval; or, for
    # format request_log, the logged examples joined with late labels.
    inputs = _log_example_gen(config, plan["label_dtype"]) \
        if config.data.format == "request_log" else \
        [_example_gen(config)]
    example_gen = inputs[-1]
    # Describe the data: TFDV statistics per split.
    # 100 quantile buckets (TFDV's default is 10): the drift and skew measures read the
    # distribution from these quantiles (components/monitor/drift.py).
    statistics_gen = tfx.components.StatisticsGen(
        examples=example_gen.outputs["examples"], stats_options=statistics_options())
    # The contract: the curated schema, imported as is (never re-inferred).
    schema_gen = tfx.components.ImportSchemaGen(schema_file=schema_uri or schema_file)
    # Check the data against the contract.
    example_validator = tfx.components.ExampleValidator(
        statistics=statistics_gen.outputs["statistics"], schema=schema_gen.outputs["schema"]
    )
    # Stop here when anything is anomalous; everything downstream waits on the gate.
    validation_gate = ValidationGate(anomalies=example_validator.outputs["anomalies"])
    components = [*inputs, statistics_gen, schema_gen, example_validator, validation_gate]

    if last >= STAGES.index("transform"):
        # Record the preprocessing settings (means, vocabularies) once, as a graph.
        transform = tfx.components.Transform(
            examples=example_gen.outputs["examples"],
            schema=schema_gen.outputs["schema"],
            preprocessing_fn=PREPROCESSING_FN,
            custom_config=transform_config(plan),
            # StatisticsGen already described the raw data, and the Trainer applies the graph
            # itself, so skip the extra Beam passes.
            disable_statistics=True,
            materialize=False,
        )
        transform.add_upstream_node(validation_gate)
        components.append(transform)

    if last >= STAGES.index("train"):
        # Train one wide-and-deep model; export it with the Transform graph inside.
        trainer = Trainer(
            run_fn=RUN_FN,
            examples=example_gen.outputs["examples"],
            transform_graph=transform.outputs["transform_graph"],
            schema=schema_gen.outputs["schema"],
            train_args=tfx.proto.TrainArgs(splits=["train"]),
            eval_args=tfx.proto.EvalArgs(splits=["eval"]),
            custom_config=trainer_config(config, plan),
        )
        # Stop here when a gating model check failed (a simpler model is as good, NaNs, an
        # export that disagrees with training): the model is never evaluated or pushed.
        model_gate = ModelCheckGate(model=trainer.outputs["model"])
        components += [trainer, model_gate]

    if last >= STAGES.index("evaluate"):
        # The model in production: the latest blessed one other than the candidate (so a
        # cached rerun stays cached). Kubeflow v2 compiles only TFX's own strategy.
        all_models = tfx.dsl.Channel(type=tfx.types.standard_artifacts.Model)
        all_blessings = tfx.dsl.Channel(type=tfx.types.standard_artifacts.ModelBlessing)
        if local_metadata:
            baseline = tfx.dsl.Resolver(
                strategy_class=LatestBlessedBaselineStrategy,
                model=all_models, model_blessing=all_blessings,
                candidate=trainer.outputs["model"],
            )
        else:
            baseline = tfx.dsl.Resolver(
                strategy_class=tfx.dsl.experimental.LatestBlessedModelStrategy,
                model=all_models, model_blessing=all_blessings,
            )
        baseline = baseline.with_id("latest_blessed_model_resolver")
        # Bless the candidate only if it clears the threshold (by default: the naive predictor
        # beyond its sampling error) and is no worse than the last blessed model.
        evaluator = Evaluator(
            examples=example_gen.outputs["examples"],
            model=trainer.outputs["model"],
            baseline_model=baseline.outputs["model"],
            eval_config=eval_config(config),
        )
        evaluator.add_upstream_node(model_gate)
        components += [baseline, evaluator]
        e = config.evaluation
        slice_gate = None
        if e.slice_threshold is not None and (e.slices or e.inclusion):
            # Every large enough slice must reach the slice threshold (Model 6, 7).
            from tandem.components.slice_gate import SliceGate
            from tandem.pipeline.evaluation import deciding_metric_name, higher_is_better

            slice_gate = SliceGate(evaluation=evaluator.outputs["evaluation"], settings=json.dumps({
                "slices": [list(g) for g in e.slices],
                "inclusion": [list(g) for g in e.inclusion],
                "metric": deciding_metric_name(config),
                "higher": higher_is_better(config),
                "threshold": e.slice_threshold, "min_size": e.min_slice_size,
                "max_gap": e.max_slice_gap}, sort_keys=True))
            components.append(slice_gate)

    if last >= STAGES.index("push"):
        # Only a blessed model reaches <serving_dir>/<model_name>/<version>/.
        pusher = tfx.components.Pusher(
            model=trainer.outputs["model"],
            model_blessing=evaluator.outputs["blessing"],
            push_destination=tfx.proto.PushDestination(
                filesystem=tfx.proto.PushDestination.Filesystem(base_directory=config.push_dir)
            ),
        )
        if slice_gate is not None:
            pusher.add_upstream_node(slice_gate)
        components.append(pusher)

    return tfx.dsl.Pipeline(
        pipeline_name=f"tandem-{config.name}",
        pipeline_root=config.pipeline_root,
        components=components,
        enable_cache=True,
        metadata_connection_config=(
            connection_config(config.metadata_path)
            if local_metadata else None
        ),
        beam_pipeline_args=beam_pipeline_args(config),
    )
