"""Tests for the feature plan that drives Transform and the Trainer."""

import pytest
from tensorflow_metadata.proto.v0 import schema_pb2

from tandem.components.features import default_skip, feature_plan, model_features
from tandem.schemas import curated_schema_path, load_schema


def test_listening_defaults_strings_are_categorical_numbers_numeric():
    plan = feature_plan(load_schema(curated_schema_path("listening")), "skipped",
                        "binary_classification")
    f = plan["features"]
    assert "skipped" not in f and plan["label"] == "skipped" and plan["label_dtype"] == "INT"
    assert f["country"]["kind"] == "categorical" and f["country"]["num_oov_buckets"] == 1
    assert f["country"]["frequency_threshold"] == 5
    assert f["age"]["kind"] == "numeric" and f["duration_s"]["kind"] == "numeric"
    assert f["shuffle"]["kind"] == "categorical"  # a bool_domain int is categorical


def test_options_override_and_skip():
    schema = load_schema(curated_schema_path("listening"))
    plan = feature_plan(schema, "skipped", "binary_classification", {
        "request_id": {"kind": "skip"},
        "age": {"kind": "bucketize", "num_buckets": 4},
        "country": {"frequency_threshold": 50},
    })
    assert "request_id" not in model_features(plan)
    assert plan["features"]["age"] == {"kind": "bucketize", "dtype": "INT", "num_buckets": 4}
    assert plan["features"]["country"]["frequency_threshold"] == 50


def test_identifiers_and_features_short_of_production_are_skipped_unless_a_kind_is_named():
    schema = load_schema(curated_schema_path("listening"))
    by_name = {f.name: f for f in schema.feature}
    by_name["country"].lifecycle_stage = schema_pb2.DISABLED
    by_name["genre"].lifecycle_stage = schema_pb2.DEPRECATED
    by_name["context"].deprecated = True
    by_name["age"].lifecycle_stage = schema_pb2.BETA
    plan = feature_plan(schema, "skipped", "binary_classification",
                        {"user_id": {"kind": "categorical"}, "genre": {"kind": "skip"}})
    kinds = {n: f["kind"] for n, f in plan["features"].items()}
    assert kinds["request_id"] == kinds["track_id"] == "skip"  # the schema's identifiers
    assert kinds["country"] == kinds["genre"] == kinds["context"] == "skip"
    assert kinds["user_id"] == "categorical"  # a named kind makes an identifier an input
    assert kinds["age"] == "numeric" and kinds["device"] == "categorical"
    assert default_skip(by_name["request_id"]) == "an identifier"
    assert default_skip(by_name["country"]) == "lifecycle stage DISABLED"
    assert default_skip(by_name["genre"]) == "lifecycle stage DEPRECATED"
    assert default_skip(by_name["context"]) == "deprecated"
    assert default_skip(by_name["age"]) is None and default_skip(by_name["device"]) is None
    # The gateway and the monitor leave a disabled or deprecated feature alone, so only the
    # schema can make it a model input: a kind in the config is refused, naming the fix.
    for name in ("country", "context"):
        with pytest.raises(ValueError, match=rf"'{name}' is .* in the schema, so the model "
                                             r"cannot read it; set its lifecycle_stage"):
            feature_plan(schema, "skipped", "binary_classification",
                         {name: {"kind": "categorical"}})
    # Options without a kind on a feature left out by default would do nothing: refused.
    with pytest.raises(ValueError, match=r"'track_id' is not a model input by default \(an "
                                         r"identifier\), so frequency_threshold would do"):
        feature_plan(schema, "skipped", "binary_classification",
                     {"track_id": {"frequency_threshold": 10}})


def test_bad_options_are_rejected_by_name():
    schema = load_schema(curated_schema_path("listening"))
    with pytest.raises(ValueError, match="unknown feature.*nope"):
        feature_plan(schema, "skipped", "binary_classification", {"nope": {"kind": "skip"}})
    with pytest.raises(ValueError, match="'country' is a string"):
        feature_plan(schema, "skipped", "binary_classification", {"country": {"kind": "numeric"}})
    with pytest.raises(ValueError, match="label 'x' is not in the schema"):
        feature_plan(schema, "x", "regression")



def test_bucketize_at_fixed_boundaries():
    schema = load_schema(curated_schema_path("listening"))
    plan = feature_plan(schema, "skipped", "binary_classification",
                        {"age": {"kind": "bucketize", "boundaries": [30, 51]}})
    assert plan["features"]["age"] == {"kind": "bucketize", "dtype": "INT",
                                       "boundaries": [30.0, 51.0], "num_buckets": 2}
    for bad in ([], [51, 30], [30, 30]):
        with pytest.raises(ValueError, match="'age': boundaries must be"):
            feature_plan(schema, "skipped", "binary_classification",
                         {"age": {"kind": "bucketize", "boundaries": bad}})
