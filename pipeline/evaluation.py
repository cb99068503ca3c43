"""Evaluator settings: the TFMA EvalConfig built from the dataset config."""

from __future__ import annotations

import tensorflow_model_analysis as tfma

from tandem.pipeline.config import PipelineConfig
from tandem.schemas.contracts import DECIDING_METRICS, MULTICLASS_ACCURACY, SERVING_DEFAULT


def _threshold(config: PipelineConfig, higher_is_better: bool):
    """The configured value bound and the change bound against the last blessed model. With
    no `evaluation.threshold` the value bound is left open here: the Evaluator fills it with
    the naive predictor's score beyond its sampling error; with no `evaluation.max_regression`
    the change bound is, with the model's own sampling error (components/evaluator.py)."""
    bound = config.evaluation.threshold
    value = None
    if bound is not None:
        value = tfma.GenericValueThreshold(
            lower_bound={"value": bound} if higher_is_better else None,
            upper_bound=None if higher_is_better else {"value": bound},
        )
    direction = (
        tfma.MetricDirection.HIGHER_IS_BETTER if higher_is_better
        else tfma.MetricDirection.LOWER_IS_BETTER
    )
    tolerance = config.evaluation.max_regression
    # No max_regression: left open here, filled by the Evaluator with the exported model's
    # sampling error at the eval split's n (components/evaluator.py).
    change = tfma.GenericChangeThreshold(
        direction=direction,
        absolute=None if tolerance is None else
        {"value": -tolerance if higher_is_better else tolerance},
    )
    if value is None:
        return tfma.MetricThreshold(change_threshold=change)
    return tfma.MetricThreshold(value_threshold=value, change_threshold=change)


def eval_config(config: PipelineConfig) -> tfma.EvalConfig:
    """AUC, accuracy and calibration for classification; RMSE and MAE for regression; the
    deciding metric gated by a value threshold and by a change threshold against the latest
    blessed model; slices from the config."""
    deciding = config.deciding_metric
    regression = config.problem_type == "regression"
    if regression:
        names = ["rmse", "mae"]
        extra = ["ExampleCount", "MeanLabel", "MeanPrediction"]
        prediction_key = "predictions"
    elif config.problem_type == "binary_classification":
        names = ["auc", "accuracy"]
        extra = ["ExampleCount", "Calibration", "MeanLabel", "MeanPrediction", "CalibrationPlot",
                 "ConfusionMatrixPlot"]
        prediction_key = "probabilities"
    else:
        names = []
        extra = ["ExampleCount"]
        prediction_key = "scores"
    def gated(class_name: str, threshold) -> tfma.MetricConfig:
        # The gate applies to the whole eval set; slices are reported, not gated, so one
        # small slice cannot veto a model.
        return tfma.MetricConfig(
            class_name=class_name,
            per_slice_thresholds=[
                tfma.PerSliceMetricThreshold(slicing_specs=[tfma.SlicingSpec()], threshold=threshold)
            ],
        )

    metrics = []
    for name in names:
        metric = DECIDING_METRICS[name]
        if name == deciding:
            metrics.append(gated(metric.tfma_class, _threshold(config, metric.higher_is_better)))
        else:
            metrics.append(tfma.MetricConfig(class_name=metric.tfma_class))
    metrics += [tfma.MetricConfig(class_name=name) for name in extra]
    if config.problem_type == "multiclass_classification":
        metrics.append(gated(MULTICLASS_ACCURACY.tfma_class,
                             _threshold(config, MULTICLASS_ACCURACY.higher_is_better)))
    e = config.evaluation
    groups = [list(g) for g in e.slices] + [list(g) for g in e.inclusion if g not in e.slices]
    slicing = [tfma.SlicingSpec()] + [tfma.SlicingSpec(feature_keys=g) for g in groups]
    return tfma.EvalConfig(
        model_specs=[tfma.ModelSpec(
            signature_name=SERVING_DEFAULT, label_key=config.label,
            prediction_key=prediction_key, model_type=tfma.TF_GENERIC,
        )],
        slicing_specs=slicing,
        metrics_specs=[tfma.MetricsSpec(metrics=metrics)],
        options=tfma.Options(include_default_metrics={"value": False}),
    )


def deciding_metric_name(config: PipelineConfig) -> str:
    """The name TFMA reports the deciding metric under."""
    if config.problem_type == "multiclass_classification":
        return MULTICLASS_ACCURACY.tfma_name
    return DECIDING_METRICS[config.deciding_metric].tfma_name


def higher_is_better(config: PipelineConfig) -> bool:
    """Whether a larger deciding metric is better (AUC, accuracy) or worse (RMSE, MAE)."""
    return DECIDING_METRICS[config.deciding_metric].higher_is_better
