"""Transform: one preprocessing_fn for any tabular dataset, driven by the feature plan.

Numeric features: missing values imputed with the mean, then z-scored. String and categorical
int features: a vocabulary named after the feature (frequency threshold, OOV buckets).
Bucketized features: quantile buckets. The label is encoded for the problem type. TF Transform
records the settings (means, vocabularies) and Trainer bakes the graph into the SavedModel.
"""

from __future__ import annotations

from typing import Any

import tensorflow as tf
import tensorflow_transform as tft

from components.features import BUCKETIZE, CATEGORICAL, NUMERIC, model_features

LABEL_VOCABULARY = "label"


def _to_dense(x, default) -> tf.Tensor:
    """A [batch] tensor from a dense [batch, 1] or a sparse (possibly empty) feature."""
    if isinstance(x, tf.SparseTensor):
        batch = x.dense_shape[0]
        x = tf.sparse.to_dense(
            tf.SparseTensor(x.indices, x.values, tf.stack([batch, tf.constant(1, tf.int64)])),
            default_value=default,
        )
    return tf.reshape(x, [-1])


def _values(x) -> tf.Tensor:
    return x.values if isinstance(x, tf.SparseTensor) else x


def _as_text(x):
    if x.dtype == tf.string:
        return x
    if isinstance(x, tf.SparseTensor):
        return tf.SparseTensor(x.indices, tf.strings.as_string(x.values), x.dense_shape)
    return tf.strings.as_string(x)


def _numeric(x) -> tf.Tensor:
    x = tf.cast(x, tf.float32) if not isinstance(x, tf.SparseTensor) else tf.SparseTensor(
        x.indices, tf.cast(x.values, tf.float32), x.dense_shape
    )
    mean = tft.mean(_values(x))
    return _to_dense(x, mean)


def _encode_label(x, plan: dict[str, Any]) -> tf.Tensor:
    problem = plan["problem_type"]
    if problem == "regression":
        return _to_dense(tf.cast(x, tf.float32) if not isinstance(x, tf.SparseTensor) else
                         tf.SparseTensor(x.indices, tf.cast(x.values, tf.float32), x.dense_shape),
                         tf.constant(0.0))
    if problem == "binary_classification" and plan["label_dtype"] == "INT":
        return _to_dense(x, tf.constant(0, tf.int64))
    # String labels (and multi-class labels) become class ids through a vocabulary; the
    # exported signatures name the classes from the same vocabulary file.
    text = _to_dense(_as_text(x), tf.constant(""))
    return tft.compute_and_apply_vocabulary(text, vocab_filename=LABEL_VOCABULARY)


def preprocessing_fn(inputs: dict[str, Any], custom_config: dict[str, Any]) -> dict[str, Any]:
    """TF Transform entry point (Transform's `preprocessing_fn`)."""
    plan = custom_config["plan"]
    outputs: dict[str, Any] = {}
    for name, spec in model_features(plan).items():
        if name not in inputs:
            continue
        x = inputs[name]
        kind = spec["kind"]
        if kind == NUMERIC:
            outputs[name] = tft.scale_to_z_score(_numeric(x))
        elif kind == BUCKETIZE:
            outputs[name] = tft.bucketize(_numeric(x), spec["num_buckets"])
        elif kind == CATEGORICAL:
            text = _to_dense(_as_text(x), tf.constant(""))
            outputs[name] = tft.compute_and_apply_vocabulary(
                text,
                frequency_threshold=spec["frequency_threshold"],
                num_oov_buckets=spec["num_oov_buckets"],
                vocab_filename=name,
            )
    label = plan["label"]
    if label in inputs:
        outputs[label] = _encode_label(inputs[label], plan)
    return outputs
