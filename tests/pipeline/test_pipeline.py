"""Tests for the DAG wiring, the Evaluator settings and the Kubeflow compile."""

import json

import pytest

from tandem.pipeline.config import ConfigError, load_config
from tandem.pipeline.evaluation import deciding_metric_name, eval_config
from tandem.pipeline.kubeflow import compile_kubeflow
from tandem.pipeline.pipeline import create_pipeline

ALL = ["ImportExampleGen", "StatisticsGen", "ImportSchemaGen", "ExampleValidator",
       "ValidationGate", "Transform", "Trainer", "ModelCheckGate",
       "latest_blessed_model_resolver", "Evaluator", "SliceGate", "Pusher"]


@pytest.mark.parametrize("until, count", [("validate", 5), ("transform", 6), ("train", 8),
                                          ("evaluate", 11), ("push", 12)])
def test_until_cuts_the_dag(until, count, tmp_path):
    config = load_config("listening", [f"output_dir={tmp_path}"])
    pipeline = create_pipeline(config, config.schema, until=until)
    ids = [c.id for c in pipeline.components]
    assert sorted(ids) == sorted(ALL[:count])


def test_transform_waits_for_the_validation_gate(tmp_path):
    config = load_config("listening", [f"output_dir={tmp_path}"])
    pipeline = create_pipeline(config, config.schema)
    transform = next(c for c in pipeline.components if c.id == "Transform")
    assert "ValidationGate" in {n.id for n in transform.upstream_nodes}


def test_evaluator_waits_for_the_model_check_gate(tmp_path):
    config = load_config("listening", [f"output_dir={tmp_path}"])
    pipeline = create_pipeline(config, config.schema)
    evaluator = next(c for c in pipeline.components if c.id == "Evaluator")
    assert "ModelCheckGate" in {n.id for n in evaluator.upstream_nodes}


def _custom_configs(*overrides):
    config = load_config("listening", list(overrides))
    nodes = {c.id: c for c in create_pipeline(config, config.schema).components}
    return (nodes["Transform"].exec_properties["custom_config"],
            nodes["Trainer"].exec_properties["custom_config"])


def test_transform_and_trainer_see_only_what_they_are_built_from():
    transform, trainer = _custom_configs()
    # Transform's cache key: the feature plan alone, so a model change never re-runs it.
    assert _custom_configs("model.epochs=3", "model.learning_rate=0.1")[0] == transform
    assert _custom_configs("features.country.frequency_threshold=50")[0] != transform
    # The Trainer's: a changed change threshold or slice bar re-evaluates the same model; the
    # value threshold retrains, since the exported model must meet it when one can (the
    # simplest adequate model, components/model_selection.py).
    assert _custom_configs("evaluation.max_regression=0.5",
                           "evaluation.slice_threshold=0.5")[1] == trainer
    assert _custom_configs("evaluation.threshold=0.9")[1] != trainer
    assert _custom_configs("model.epochs=3")[1] != trainer


def test_classification_gate_is_on_the_overall_slice_only():
    config = load_config("listening")
    ec = eval_config(config)
    assert ec.model_specs[0].signature_name == "serving_default"
    assert ec.model_specs[0].label_key == "skipped"
    # The served signature as a generic SavedModel, with only the metrics below: TFMA does not
    # reload the Keras model in each metrics DoFn for its compiled metrics.
    assert ec.model_specs[0].model_type == "tf_generic"
    assert ec.options.include_default_metrics.value is False
    assert ec.options.HasField("include_default_metrics")
    assert [list(s.feature_keys) for s in ec.slicing_specs] == [[], ["country"], ["device"]]
    metrics = {m.class_name: m for m in ec.metrics_specs[0].metrics}
    assert {"AUC", "BinaryAccuracy", "Calibration", "ExampleCount"} <= set(metrics)
    (gate,) = metrics["AUC"].per_slice_thresholds
    assert list(gate.slicing_specs[0].feature_keys) == []
    assert gate.threshold.value_threshold.lower_bound.value == 0.70
    assert gate.threshold.change_threshold.absolute.value == pytest.approx(-0.01)
    assert not metrics["BinaryAccuracy"].per_slice_thresholds
    assert deciding_metric_name(config) == "auc"


def test_the_slice_gate_holds_the_pusher_back(tmp_path):
    config = load_config("listening", [f"output_dir={tmp_path}"])
    nodes = {c.id: c for c in create_pipeline(config, config.schema).components}
    assert "SliceGate" in {n.id for n in nodes["Pusher"].upstream_nodes}
    settings = json.loads(nodes["SliceGate"].exec_properties["settings"])
    assert settings == {"slices": [["country"], ["device"]], "inclusion": [["country"]],
                        "metric": "auc", "higher": True, "threshold": 0.65, "min_size": 200,
                        "max_gap": 0.1}
    off = load_config("listening", [f"output_dir={tmp_path}", "evaluation.slice_threshold=null"])
    assert "SliceGate" not in {c.id for c in create_pipeline(off, off.schema).components}


def test_regression_gate_is_an_upper_bound_on_rmse():
    config = load_config("taxi", ["evaluation.threshold=5.0"])
    metrics = {m.class_name: m for m in eval_config(config).metrics_specs[0].metrics}
    assert {"RootMeanSquaredError", "MeanAbsoluteError"} <= set(metrics)
    gate = metrics["RootMeanSquaredError"].per_slice_thresholds[0].threshold
    assert gate.value_threshold.upper_bound.value == 5.0
    assert gate.change_threshold.absolute.value == pytest.approx(0.1)
    assert deciding_metric_name(config) == "root_mean_squared_error"
    with pytest.raises(ConfigError, match="auc needs a classification problem"):
        load_config("taxi", ["evaluation.metric=auc"])
    # No threshold: the value bound is left for the Evaluator's naive bar
    # (components/evaluator.py); the change bound against the last blessed model stays.
    open_gate = {m.class_name: m for m in eval_config(load_config(
        "taxi", ["evaluation.threshold=null"])).metrics_specs[0].metrics}
    threshold = open_gate["RootMeanSquaredError"].per_slice_thresholds[0].threshold
    assert not threshold.HasField("value_threshold")
    assert threshold.change_threshold.absolute.value == pytest.approx(0.1)


@pytest.mark.parametrize("name, overrides, tfma_name, higher", [
    ("listening", [], "auc", True),
    ("listening", ["evaluation.metric=accuracy"], "binary_accuracy", True),
    ("taxi", [], "root_mean_squared_error", False),
    ("taxi", ["evaluation.metric=mae"], "mean_absolute_error", False),
    ("listening", ["problem_type=multiclass_classification", "evaluation.metric=null"],
     "sparse_categorical_accuracy", True),
])
def test_the_evaluator_reads_back_the_metric_the_pipeline_gates(name, overrides, tfma_name,
                                                                higher):
    """One metric table (schemas/contracts.py): the metric the EvalConfig gates is the one the
    Evaluator finds gated, under the name TFMA reports and in the direction it is judged."""
    from tandem.components.evaluator import _deciding
    from tandem.pipeline.evaluation import higher_is_better

    config = load_config(name, overrides)
    assert _deciding(eval_config(config)) == config.deciding_metric
    assert deciding_metric_name(config) == tfma_name
    assert higher_is_better(config) is higher


def test_every_configurable_metric_is_in_the_metric_table():
    import typing

    from tandem.pipeline.config import Metric
    from tandem.schemas.contracts import DECIDING_METRICS

    assert set(typing.get_args(Metric)) == set(DECIDING_METRICS)


def test_kubeflow_spec_names_every_component_and_module(tmp_path):
    config = load_config("listening")
    out = tmp_path / "kf.json"
    summary = compile_kubeflow(config, str(out), image="registry.example/tandem:1",
                               pipeline_root="gs://bucket/tandem")
    spec = json.loads(out.read_text())
    tasks = set(spec["pipelineSpec"]["root"]["dag"]["tasks"])
    for component in ALL:
        if component != "latest_blessed_model_resolver":
            assert component in tasks
    assert any(t.startswith("latest_blessed_model_resolver") for t in tasks)
    text = out.read_text()
    assert "tandem.components.transform.preprocessing_fn" in text
    assert "tandem.components.trainer.run_fn" in text
    assert "registry.example/tandem:1" in text
    assert "gs://bucket/tandem" in text
    assert summary["components"] == sorted(tasks)


@pytest.mark.parametrize("label, problem, metric, kind", [
    ("skipped", "binary_classification", "auc", "INT"),
    ("country", "multiclass_classification", "accuracy", "BYTES"),
    ("duration_s", "regression", "rmse", "FLOAT"),
])
def test_log_example_gen_reads_labels_as_the_schema_types_the_label(label, problem, metric,
                                                                    kind, tmp_path):
    config = load_config("listening", [
        f"output_dir={tmp_path}", "data.format=request_log", f"data.location={tmp_path}",
        f"data.labels={tmp_path}/labels.csv", f"label={label}", f"problem_type={problem}",
        f"evaluation.metric={metric}"])
    pipeline = create_pipeline(config, config.schema, until="validate")
    gen = next(c for c in pipeline.components if c.id == "LogExampleGen")
    assert gen.exec_properties["label_kind"] == kind


def test_a_plan_without_model_inputs_is_a_config_error_before_anything_runs(tmp_path):
    """Every feature left out (here: the listening schema's identifiers and every other
    feature skipped by the config; a user's CSV of an id and an empty column is the same) is
    exit 2 with each feature's reason, not a Trainer failure after ExampleGen and Transform;
    and feature options the schema refuses are a config error too."""
    from tandem.schemas import load_schema

    names = [f.name for f in load_schema(load_config("listening").schema).feature]
    skips = [f"features.{n}.kind=skip" for n in names
             if n not in ("skipped", "request_id", "user_id", "track_id")]
    config = load_config("listening", [f"output_dir={tmp_path}", *skips,
                                       "features.request_id={}", "features.user_id={}",
                                       "features.track_id={}"])
    with pytest.raises(ConfigError, match=r"^no model inputs: every feature is left out of the "
                                          r"model: request_id \(an identifier\), .*age "
                                          r"\(kind: skip\).*; name a kind"):
        create_pipeline(config, config.schema)
    bad = load_config("listening", [f"output_dir={tmp_path}", "features.country.kind=numeric"])
    with pytest.raises(ConfigError, match="'country' is a string; it cannot be numeric"):
        create_pipeline(bad, bad.schema)
