"""Contracts: the names and rules that the Trainer's signatures, the model server, the pipeline
and the schema proposals share, each stated once here."""

from __future__ import annotations

import dataclasses
import os

import numpy as np
from tensorflow_metadata.proto.v0 import schema_pb2

# Signatures of an exported model (the Trainer writes them, the servers and TFMA read them).
SERVING_DEFAULT = "serving_default"  # predict on raw serialized tf.Examples
EXAMPLES_INPUT = "examples"  # serving_default's one input
CLASSIFY_SIGNATURE = "classification"
REGRESS_SIGNATURE = "regression"
TRANSFORM_SIGNATURE = "transform_features"

# A model's answer, by output name: a binary probability [n] (tandem's binary models), class
# scores [n, k] with their `classes` names, a regression value [n] (serving_default), or
# Regress's `outputs` [n]. The first of OUTPUT_KEYS a model answers with is the one compared.
OUTPUT_KEYS = ("probabilities", "scores", "predictions", "outputs")
CLASSES_OUTPUT = "classes"


def output_key(outputs) -> str:
    """The output compared: a binary probability, class scores, or a regression value."""
    for key in OUTPUT_KEYS:
        if key in outputs:
            return key
    return sorted(outputs)[0]


def served_output(outputs: dict, problem: str) -> np.ndarray:
    """The serving signature's prediction: probabilities (binary), scores (multi-class) or
    predictions (regression)."""
    for key in (("predictions",) if problem == "regression" else ("probabilities", "scores")):
        if key in outputs:
            return np.asarray(outputs[key])
    raise KeyError(f"serving outputs {sorted(outputs)} lack a prediction")


# Quality metrics where a larger value is worse: the replay gate bounds B - A from above for
# these, from below for the others (AUC, accuracy); the replay report draws them alike.
LOWER_IS_BETTER = frozenset({"rmse", "mae", "log_loss"})


@dataclasses.dataclass(frozen=True)
class DecidingMetric:
    """A metric the Evaluator's gate can decide on: tandem's name for it (`evaluation.metric`),
    the TFMA metric class that computes it, and the name TFMA reports it under."""

    name: str
    tfma_class: str
    tfma_name: str

    @property
    def higher_is_better(self) -> bool:
        return self.name not in LOWER_IS_BETTER


# The deciding metrics by tandem's name: the pipeline's EvalConfig gates one of them and the
# Evaluator reads back which one it gated.
DECIDING_METRICS = {m.name: m for m in (
    DecidingMetric("auc", "AUC", "auc"),
    DecidingMetric("accuracy", "BinaryAccuracy", "binary_accuracy"),
    DecidingMetric("rmse", "RootMeanSquaredError", "root_mean_squared_error"),
    DecidingMetric("mae", "MeanAbsoluteError", "mean_absolute_error"),
)}
# A multi-class model's accuracy: TFMA computes it from the class scores, under its own name.
MULTICLASS_ACCURACY = DecidingMetric("accuracy", "SparseCategoricalAccuracy",
                                     "sparse_categorical_accuracy")


# TF Serving's method names.
PREDICT_METHOD = "tensorflow/serving/predict"
CLASSIFY_METHOD = "tensorflow/serving/classify"
REGRESS_METHOD = "tensorflow/serving/regress"

# Files beside a SavedModel: TF Serving replays the warmup records before serving a version.
ASSETS_EXTRA = "assets.extra"
WARMUP_FILE = "tf_serving_warmup_requests"


def warmup_path(model_dir: str) -> str:
    return os.path.join(model_dir, ASSETS_EXTRA, WARMUP_FILE)


def is_deprecated(feature: schema_pb2.Feature) -> bool:
    """TFDV's rule for a feature its validation leaves alone: lifecycle stage DEPRECATED or
    DISABLED (`schema propose` disables a column with no values), or the legacy `deprecated`
    flag. The gateway's validator and the monitor leave it alone too."""
    return feature.lifecycle_stage in (schema_pb2.DEPRECATED, schema_pb2.DISABLED) or \
        feature.deprecated


def is_categorical(feature: schema_pb2.Feature) -> bool:
    """The one rule for a categorical feature: strings, and integers the schema marks as
    categories (int_domain.is_categorical) or booleans (bool_domain). Transform gives them a
    vocabulary and the schema compares their distributions with L-infinity."""
    return feature.type == schema_pb2.BYTES or (
        feature.type == schema_pb2.INT and (
            (feature.HasField("int_domain") and feature.int_domain.is_categorical)
            or feature.HasField("bool_domain")
        )
    )


def class_names(problem_type: str, label_dtype: str, label: str,
                label_values: list[str]) -> list[str]:
    """The one rule for label encoding, the served class order: `scores[:, k]` is the score of
    `class_names(...)[k]`.

    `label_values` are the label's distinct values as text. Integer labels are class ids, as
    Keras and scikit-learn take them: classes 0..max, so `scores[:, k]` is class k and an
    evaluator's raw label equals the argmax position. Binary integer labels are 0 and 1.
    String labels are ordered by their text, a stable order that does not depend on how often
    each class occurs.
    """
    if problem_type == "regression":
        return []
    if label_dtype in ("INT", "FLOAT"):
        if problem_type == "binary_classification":
            return ["0", "1"]
        ids = sorted({int(float(v)) for v in label_values})
        if ids and ids[0] < 0:
            raise ValueError(
                f"label '{label}' has negative class id {ids[0]}; integer classes "
                "must be 0, 1, 2, ... (or use string class names)"
            )
        return [str(i) for i in range(ids[-1] + 1)] if ids else []
    return sorted(label_values)
