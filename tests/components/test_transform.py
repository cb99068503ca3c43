"""The preprocessing_fn's numeric features, through TF Transform's own analyze-and-transform on
Beam: each column is imputed with the mean of its present values and z-scored on its own, as
if it were alone, however many numeric features share the one block of analyzers."""

import tempfile

import numpy as np
import pytest
import tensorflow as tf
import tensorflow_transform.beam as tft_beam
from tensorflow_transform.tf_metadata import dataset_metadata, schema_utils

from tandem.components import transform


def _analyze_and_transform(rows, spec, plan, later=()):
    """The transformed rows, then each list of `later` rows transformed by the same graph
    (as serving applies it to a request)."""
    metadata = dataset_metadata.DatasetMetadata(schema_utils.schema_from_feature_spec(spec))
    with tft_beam.Context(temp_dir=tempfile.mkdtemp()):
        (out, _), transform_fn = (rows, metadata) | tft_beam.AnalyzeAndTransformDataset(
            lambda inputs: transform.preprocessing_fn(inputs, {"plan": plan}))
        served = [((batch, metadata), transform_fn) | tft_beam.TransformDataset()
                  for batch in later]
    return out, [rows for rows, _ in served]


def _expected(values):
    """Impute with the mean of the present values, then z-score (population std)."""
    present = [v for v in values if v is not None]
    raw = np.array([np.mean(present) if v is None else v for v in values])
    return (raw - raw.mean()) / raw.std()


@pytest.mark.slow
def test_each_numeric_column_is_imputed_and_scaled_on_its_own():
    rng = np.random.default_rng(3)
    n = 200
    # sparse: values missing at random, each column its own scale; dense: real zeros (which a
    # sparse view of a dense column would take for missing values); an int column; one column
    # present in only three rows; a categorical between them that the block leaves alone.
    sparse = {f"s{j}": [None if rng.random() < 0.3 else float(rng.normal(10 * j, 1 + j))
                        for _ in range(n)] for j in range(3)}
    sparse["rare"] = [float(i) if i in (5, 50, 150) else None for i in range(n)]
    sparse["never"] = [None] * n  # no value in any row: imputed and scaled to 0
    dense = [float(i % 3) for i in range(n)]  # 0, 1, 2, 0, ...: a third of them zeros
    ints = [int(v) for v in rng.integers(-5, 6, size=n)]
    colors = [["red", "blue"][i % 2] for i in range(n)]
    rows = [{**{k: [v[i]] if v[i] is not None else [] for k, v in sparse.items()},
             "dense": [dense[i]], "ints": [ints[i]], "color": [colors[i]],
             "y": [float(i)]} for i in range(n)]
    spec = {**{k: tf.io.VarLenFeature(tf.float32) for k in sparse},
            "dense": tf.io.FixedLenFeature([1], tf.float32),
            "ints": tf.io.FixedLenFeature([1], tf.int64),
            "color": tf.io.FixedLenFeature([1], tf.string),
            "y": tf.io.FixedLenFeature([1], tf.float32)}
    features = {k: {"kind": "numeric"} for k in [*sparse, "dense", "ints"]}
    features["color"] = {"kind": "categorical", "frequency_threshold": 1, "num_oov_buckets": 1}
    plan = {"label": "y", "problem_type": "regression", "features": features}

    out, [alone] = _analyze_and_transform(rows, spec, plan, later=[rows[7:8]])

    got = {k: np.array([o[k] for o in out]) for k in [*sparse, "dense", "ints"]}
    assert not got["never"].any()
    for name, values in [*sparse.items(), ("dense", dense), ("ints", ints)]:
        if name != "never":
            np.testing.assert_allclose(got[name], _expected(values), atol=2e-5, err_msg=name)
    assert alone == [out[7]]  # one example alone is transformed as within the batch
    assert {o["color"] for o in out} == {0, 1}  # the categorical kept its own vocabulary
    y = np.array([o["y"] for o in out])
    assert y.mean() == pytest.approx(0, abs=1e-5) and y.std() == pytest.approx(1, abs=1e-4)


@pytest.mark.slow
def test_a_second_value_of_a_numeric_feature_is_refused_not_shifted_into_the_next():
    """Two values of one numeric feature in an example: the graph fails naming the feature
    (as its dense form would), instead of the second value becoming the next column's."""
    spec = {"a": tf.io.VarLenFeature(tf.float32), "b": tf.io.VarLenFeature(tf.float32),
            "y": tf.io.FixedLenFeature([1], tf.float32)}
    plan = {"label": "y", "problem_type": "regression",
            "features": {"a": {"kind": "numeric"}, "b": {"kind": "numeric"}}}
    rows = [{"a": [float(i)], "b": [float(-i)], "y": [float(i)]} for i in range(20)]
    bad = [{"a": [1.0, 1000.0], "b": [], "y": [0.0]}]
    with pytest.raises(Exception, match=r"(?s)out of bounds.*numeric_a/"):
        _analyze_and_transform(rows, spec, plan, later=[bad])
