"""Evaluator: TFX's own, with a bar that needs no knowledge of the data.

A newcomer cannot know a good RMSE for data nobody has modelled yet, and a fixed AUC bar is
wrong for half of all datasets. So when `evaluation.threshold` is not set, the deciding
metric's value threshold is the naive predictor's score moved by its sampling error (AUC 0.5,
the training split's most frequent class, or the training mean; see
components/model_selection.py: `naive_bar`). The Trainer measures it on the same eval split
the Evaluator scores and writes it to the model's build record; this executor puts it into
the EvalConfig just before TFMA runs, so TFMA itself blesses or refuses, the blessing in ML
Metadata is right for the next run's baseline, and the verdict names the failed bound.

In the same way, when `evaluation.max_regression` is not set, the change threshold against
the last blessed model is left open by pipeline/evaluation.py and filled here with the
paired sampling error of candidate - baseline on the eval split (`paired_tolerance`: both
served models score the same eval examples, and the deciding metric's difference is
bootstrapped over those examples, 1.96 errors): a fixed 0.01 is noise on a few hundred
examples and meaningless in a regression label's units, and one score's error would let
through a model much worse than the baseline when a heavy-tailed label widens both scores
alike. The tolerance is recorded on the evaluation artifact (`change_tolerance`,
`change_tolerance_n`). With no baseline there is no change to judge.

A configured threshold is used as it is. A model without the bar (or the tolerance) in its
record (imported, built elsewhere) fails closed: there is nothing to judge it against.
"""

from __future__ import annotations

import os
from typing import Any

import tensorflow_model_analysis as tfma
from tfx.components.evaluator import executor as evaluator_executor
from tfx.dsl.components.base import executor_spec
from tfx.types import artifact_utils, standard_component_specs
from tfx.utils import path_utils, proto_utils

from tandem.components import tfx_api as tfx
from tandem.components.build_record import RecordError, load_record
from tandem.schemas.contracts import DECIDING_METRICS, MULTICLASS_ACCURACY


class NoBar(RuntimeError):
    """No evaluation threshold is configured and the model records no naive bar."""


def _gated(eval_config: tfma.EvalConfig) -> list[tfma.MetricThreshold]:
    """Every metric threshold of the config: per slice, and the metric's own."""
    found = []
    for spec in eval_config.metrics_specs:
        for metric in spec.metrics:
            found += [per_slice.threshold for per_slice in metric.per_slice_thresholds]
            if metric.HasField("threshold"):
                found.append(metric.threshold)
    return found


def unbounded_thresholds(eval_config: tfma.EvalConfig) -> list[tfma.MetricThreshold]:
    """The gated metrics' thresholds that have no value bound (the ones the naive bar
    fills)."""
    return [t for t in _gated(eval_config) if not t.HasField("value_threshold")]


def apply_naive_bar(eval_config: tfma.EvalConfig, naive: dict[str, Any] | None) -> bool:
    """Give every gated metric without a value bound the naive bar; False when none lacked
    one. Raises NoBar when one does and there is no bar."""
    open_thresholds = unbounded_thresholds(eval_config)
    if not open_thresholds:
        return False
    if not naive or naive.get("bar") is None:
        raise NoBar("no evaluation.threshold is set and the model's build record has no "
                    "naive-predictor bar" + (f" ({naive['summary']})" if naive else "")
                    + ": set evaluation.threshold")
    bound = {"value": float(naive["bar"])}
    for threshold in open_thresholds:
        if naive["higher_is_better"]:
            threshold.value_threshold.lower_bound.CopyFrom(
                tfma.GenericValueThreshold(lower_bound=bound).lower_bound)
        else:
            threshold.value_threshold.upper_bound.CopyFrom(
                tfma.GenericValueThreshold(upper_bound=bound).upper_bound)
    return True


def open_change_thresholds(eval_config: tfma.EvalConfig) -> list[tfma.GenericChangeThreshold]:
    """The gated metrics' change thresholds with no bound (the ones the tolerance fills)."""
    return [t.change_threshold for t in _gated(eval_config) if t.HasField("change_threshold")
            and not t.change_threshold.HasField("absolute")
            and not t.change_threshold.HasField("relative")]


TOLERANCE_EXAMPLES = 4000  # eval examples both models score for the paired error
RESAMPLES = 200


def _label(example, label: str, classes: list[str] | None) -> float | None:
    """The example's label as the metric reads it: a class position, or the value."""
    feature = example.features.feature.get(label)
    kind = feature.WhichOneof("kind") if feature is not None else None
    values = getattr(feature, kind).value if kind else []
    if not values:
        return None
    value = values[0]
    if isinstance(value, bytes):
        text = value.decode("utf-8", "replace")
        if classes is None:
            return float(text)
        return float(classes.index(text)) if text in classes else -1.0
    return float(value)


def paired_tolerance(candidate_dir: str, baseline_dir: str, eval_files: list[str],
                     deciding: str, record: dict[str, Any], seed: int = 0) -> dict[str, Any]:
    """1.96 paired bootstrap errors of the deciding metric's candidate - baseline difference,
    both served models scoring the same (up to TOLERANCE_EXAMPLES) labelled eval examples."""
    import numpy as np
    import tensorflow as tf
    from tensorflow.core.example import example_pb2

    from tandem.components import model_checks as mc
    from tandem.components.model_selection import Z
    from tandem.components.sampling_error import metric, paired_error
    from tandem.schemas.contracts import SERVING_DEFAULT, served_output

    problem, label, classes = record["problem_type"], record["label"], record.get("classes")
    raw, labels = [], []
    for r in mc.raw_records(eval_files, TOLERANCE_EXAMPLES):
        y = _label(example_pb2.Example.FromString(r), label, classes)
        if y is not None:
            raw.append(r)
            labels.append(y)
    n = len(labels)
    if n < 2:
        return {"tolerance": None, "n": n,
                "summary": f"{n} labelled eval examples: no paired sampling error"}
    outs = []
    for directory in (candidate_dir, baseline_dir):
        serve = tf.saved_model.load(directory).signatures[SERVING_DEFAULT]
        outs.append(np.concatenate([
            served_output(serve(examples=tf.constant(raw[i:i + 512])), problem)
            for i in range(0, n, 512)]))
    measure, _ = metric(deciding, problem)
    tolerance = Z * paired_error(measure, outs[0], outs[1], np.array(labels), seed, RESAMPLES)
    if not np.isfinite(tolerance):
        return {"tolerance": None, "n": n,
                "summary": f"the paired error of {deciding} is not finite on n={n}"}
    return {"tolerance": tolerance, "n": n,
            "summary": (f"{deciding} may be at most {tolerance:.4f} worse than the last blessed "
                        f"model (1.96 paired sampling errors of the difference at n={n})")}


def apply_tolerance(eval_config: tfma.EvalConfig, tolerance: dict[str, Any] | None) -> bool:
    """Bound every open change threshold by the measured tolerance (`paired_tolerance`);
    False when none was open. Raises NoBar when one is and there is no tolerance."""
    open_changes = open_change_thresholds(eval_config)
    if not open_changes:
        return False
    if not tolerance or tolerance.get("tolerance") is None:
        raise NoBar("no evaluation.max_regression is set and no paired tolerance against the "
                    "last blessed model could be measured"
                    + (f" ({tolerance['summary']})" if tolerance else "")
                    + ": set evaluation.max_regression")
    value = float(tolerance["tolerance"])
    for change in open_changes:
        higher = change.direction == tfma.MetricDirection.HIGHER_IS_BETTER
        change.absolute.value = -value if higher else value
    return True


class NaiveBarExecutor(evaluator_executor.Executor):
    def Do(self, input_dict: dict[str, list[Any]], output_dict: dict[str, list[Any]],
           exec_properties: dict[str, Any]) -> None:
        key = standard_component_specs.EVAL_CONFIG_KEY
        if exec_properties.get(key) and input_dict.get(standard_component_specs.MODEL_KEY):
            eval_config = tfma.EvalConfig()
            proto_utils.json_to_proto(exec_properties[key], eval_config)
            model = artifact_utils.get_single_instance(
                input_dict[standard_component_specs.MODEL_KEY])
            try:
                record = load_record(path_utils.serving_model_path(model.uri))
            except RecordError:
                record = {}
            filled = apply_naive_bar(eval_config, record.get("naive"))
            baseline = input_dict.get(standard_component_specs.BASELINE_MODEL_KEY)
            if baseline and open_change_thresholds(eval_config):
                tolerance = None
                if record:
                    examples = input_dict[standard_component_specs.EXAMPLES_KEY]
                    files = [os.path.join(uri, "*") for uri in
                             artifact_utils.get_split_uris(examples, "eval")]
                    tolerance = paired_tolerance(
                        path_utils.serving_model_path(model.uri),
                        path_utils.serving_model_path(
                            artifact_utils.get_single_instance(baseline).uri),
                        files, _deciding(eval_config), record)
                filled = apply_tolerance(eval_config, tolerance) or filled
                evaluation = artifact_utils.get_single_instance(
                    output_dict[standard_component_specs.EVALUATION_KEY])
                evaluation.set_float_custom_property("change_tolerance",
                                                     float(tolerance["tolerance"]))
                evaluation.set_int_custom_property("change_tolerance_n", int(tolerance["n"]))
            if filled:
                exec_properties = {**exec_properties,
                                   key: proto_utils.proto_to_json(eval_config)}
        super().Do(input_dict, output_dict, exec_properties)


def _deciding(eval_config: tfma.EvalConfig) -> str:
    """The deciding metric's tandem name: the gated metric with a change threshold."""
    names = {m.tfma_class: m.name for m in (*DECIDING_METRICS.values(), MULTICLASS_ACCURACY)}
    for spec in eval_config.metrics_specs:
        for metric in spec.metrics:
            if any(t.threshold.HasField("change_threshold") for t in metric.per_slice_thresholds):
                return names[metric.class_name]
    raise NoBar("no gated metric in the evaluation config")


class Evaluator(tfx.components.Evaluator):
    """TFX's Evaluator (same name, inputs, outputs and id) whose default bar is the naive
    predictor's."""

    EXECUTOR_SPEC = executor_spec.BeamExecutorSpec(NaiveBarExecutor)
