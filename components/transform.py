"""Transform: one preprocessing_fn for any tabular dataset, driven by the feature plan.

Numeric features: missing values imputed with the mean of the present ones, then z-scored, all
numeric features as the columns of one block, so two analyzers serve any number of them (one per
feature made Transform's cost grow with the width: 64 numeric inputs took 149 s on 1,797 rows,
bench/transform.py). String and categorical int features: a vocabulary named after the feature
(frequency threshold, OOV buckets).
Bucketized features: quantile buckets. TF Transform records the settings (means, vocabularies)
and Trainer bakes the graph into the SavedModel.

The label:
- regression: z-scored, so the model's defaults work whatever the label's scale; its mean and
  standard deviation ride along as two extra outputs, which the Trainer reads once and uses
  to undo the scaling in the serving signatures;
- classification: its values are recorded as a vocabulary (the class list) and the label
  passes through unchanged. TF Transform orders a vocabulary by frequency, and a class order
  that depends on the data's frequencies makes `scores[:, k]` mean different classes in
  different models; the Trainer orders the classes instead (`class_names`).
"""

from __future__ import annotations

import re
from typing import Any

import tensorflow as tf
import tensorflow_transform as tft

from tandem.components.features import BUCKETIZE, CATEGORICAL, NUMERIC, model_features

LABEL_VOCABULARY = "label"
# Regression label scaling, as outputs of the Transform graph (training only: they depend on
# the label, so the serving graph drops them).
LABEL_MEAN = "__label_mean__"
LABEL_STD = "__label_std__"


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


def _cast(x, dtype):
    if isinstance(x, tf.SparseTensor):
        return tf.SparseTensor(x.indices, tf.cast(x.values, dtype), x.dense_shape)
    return tf.cast(x, dtype)


def _numeric(x) -> tf.Tensor:
    x = _cast(x, tf.float32)
    mean = tft.mean(_values(x))
    return _to_dense(x, mean)


def _numeric_block(columns: dict[str, Any]) -> tf.Tensor:
    """[batch, k] float32: column j is the j-th input (a dense [batch, 1] or a sparse feature of
    at most one value) with its missing values imputed by its mean over the present values,
    z-scored per column (a column with no present value is 0). An example with two values of
    one feature fails with InvalidArgumentError ("out of bounds"), the node named after the
    feature, as TF Serving answers a request that feeds them."""
    values, present = [], []
    for name, x in columns.items():
        with tf.name_scope("numeric_" + re.sub(r"[^A-Za-z0-9_.-]", "_", name)):
            x = _cast(x, tf.float32)
            # _to_dense's SparseToDense refuses an index outside [batch, 1]: a second value.
            values.append(_to_dense(x, 0.0))
            ones = (tf.SparseTensor(x.indices, tf.ones_like(x.values), x.dense_shape)
                    if isinstance(x, tf.SparseTensor) else tf.ones_like(x))
            present.append(_to_dense(ones, 0.0))
    values, present = tf.stack(values, axis=1), tf.stack(present, axis=1)
    where = tf.where(present > 0)
    block = tf.SparseTensor(where, tf.gather_nd(values, where),
                            tf.shape(values, out_type=tf.int64))
    mean = tft.mean(block, reduce_instance_dims=False)  # per column, over its present values
    mean = tf.where(tf.math.is_finite(mean), mean, tf.zeros_like(mean))
    imputed = values + (1.0 - present) * mean[tf.newaxis, :]
    return tft.scale_to_z_score(imputed, elementwise=True)


def _encode_label(x, plan: dict[str, Any]) -> dict[str, tf.Tensor]:
    label = plan["label"]
    if plan["problem_type"] == "regression":
        y = _to_dense(_cast(x, tf.float32), tf.constant(0.0))
        mean = tft.mean(y)
        std = tf.sqrt(tft.var(y))
        std = tf.where(std > 0, std, tf.ones_like(std))  # a constant label: shift only
        return {
            label: (y - mean) / std,
            LABEL_MEAN: tf.zeros_like(y) + mean,
            LABEL_STD: tf.zeros_like(y) + std,
        }
    if x.dtype == tf.string:
        y = _to_dense(x, tf.constant(""))
    else:  # whole-number class ids, possibly stored as floats (preflight checks they are whole)
        y = _to_dense(_cast(x, tf.int64), tf.constant(0, tf.int64))
    tft.vocabulary(_as_text(y), vocab_filename=LABEL_VOCABULARY)
    return {label: y}


def preprocessing_fn(inputs: dict[str, Any], custom_config: dict[str, Any]) -> dict[str, Any]:
    """TF Transform entry point (Transform's `preprocessing_fn`)."""
    plan = custom_config["plan"]
    outputs: dict[str, Any] = {}
    features = {name: spec for name, spec in model_features(plan).items() if name in inputs}
    numeric = [name for name, spec in features.items() if spec["kind"] == NUMERIC]
    if numeric:
        block = _numeric_block({name: inputs[name] for name in numeric})
        for j, name in enumerate(numeric):
            outputs[name] = block[:, j]
    for name, spec in features.items():
        x = inputs[name]
        kind = spec["kind"]
        if kind == BUCKETIZE and spec.get("boundaries"):
            outputs[name] = tft.apply_buckets(
                _numeric(x), tf.constant([spec["boundaries"]], dtype=tf.float32))
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
        outputs.update(_encode_label(inputs[label], plan))
    return outputs
