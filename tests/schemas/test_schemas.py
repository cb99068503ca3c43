"""Tests for the schema loader, the range proposal, tandem's contracts and the schema diff."""

import numpy as np
import pandas as pd
import pytest
import tensorflow_data_validation as tfdv
from tensorflow_metadata.proto.v0 import schema_pb2

from tandem.pipeline.datasets import listening
from tandem.schemas import (
    SERVING,
    SchemaError,
    curated_schema_path,
    load_schema,
    schema_fingerprint,
)
from tandem.schemas.identifiers import declare_identifiers, declared_identifiers
from tandem.schemas.propose import (
    OPEN_VOCABULARY,
    apply_contracts,
    diff_schemas,
    disable_empty_features,
    guarded_range,
    mark_open_vocabularies,
    numbers_with_markers,
    propose_numeric_ranges,
    propose_schema,
)


def _stats(frame: pd.DataFrame):
    return tfdv.generate_statistics_from_dataframe(frame)


def test_guard_band_widens_but_never_crosses_zero_for_nonnegative_data():
    assert guarded_range(10.0, 110.0) == pytest.approx((0.0, 120.0))
    assert guarded_range(20.0, 30.0) == pytest.approx((19.0, 31.0))
    assert guarded_range(-10.0, 10.0) == pytest.approx((-12.0, 12.0))


def test_inferred_schema_gets_numeric_ranges_from_quantiles():
    frame = pd.DataFrame({
        "age": list(range(16, 81)) * 20,
        "score": [x / 10 for x in range(0, 1300)],
        "flag": [0, 1] * 650,
    })
    stats = _stats(frame)
    plain = tfdv.infer_schema(stats)
    assert not any(f.HasField("int_domain") or f.HasField("float_domain") for f in plain.feature)
    schema = tfdv.infer_schema(stats, schema_transformations=[propose_numeric_ranges])
    features = {f.name: f for f in schema.feature}
    assert (features["age"].int_domain.min, features["age"].int_domain.max) == (10, 86)
    assert features["score"].float_domain.min == 0.0
    assert features["score"].float_domain.max == pytest.approx(129.9 * 1.1, rel=1e-3)
    # A negative age in new data must fall outside the proposed domain.
    bad = _stats(pd.DataFrame({"age": [-3, 30, 40], "score": [1.0, 2.0, 3.0], "flag": [0, 1, 0]}))
    anomalies = tfdv.validate_statistics(bad, schema)
    assert "age" in anomalies.anomaly_info


def test_contracts_environments_label_domain_comparators_and_min_examples():
    frame = pd.DataFrame({"x": [1.5, 2.5] * 50, "c": ["a", "b"] * 50, "y": [0, 1] * 50})
    schema = propose_schema(_stats(frame), "y", "binary_classification")
    features = {f.name: f for f in schema.feature}
    assert list(schema.default_environment) == ["TRAINING", "SERVING"]
    assert list(features["y"].not_in_environment) == [SERVING]
    assert features["y"].int_domain.is_categorical and features["y"].int_domain.max == 1
    assert features["x"].drift_comparator.jensen_shannon_divergence.threshold == 0.1
    assert features["c"].drift_comparator.infinity_norm.threshold == 0.1
    assert features["y"].drift_comparator.infinity_norm.threshold == 0.1
    assert not features["y"].HasField("skew_comparator")
    assert features["x"].HasField("skew_comparator") and features["c"].HasField("skew_comparator")
    assert schema.dataset_constraints.min_examples_count == 10
    with pytest.raises(ValueError, match="label 'nope' is not a feature"):
        apply_contracts(schema, "nope", "regression", 100)


def test_a_column_with_no_values_is_proposed_disabled_and_never_the_label():
    frame = pd.DataFrame({"x": [1.5, 2.5] * 50, "notes": [np.nan] * 100,
                          "remark": [np.nan] * 100, "y": [0, 1] * 50})
    stats = _stats(frame)
    schema = propose_schema(stats, "y", "binary_classification")
    features = {f.name: f for f in schema.feature}
    assert features["notes"].lifecycle_stage == schema_pb2.DISABLED
    assert not features["notes"].HasField("drift_comparator")
    assert not features["notes"].HasField("skew_comparator")
    assert features["x"].lifecycle_stage == schema_pb2.UNKNOWN_STAGE
    assert features["x"].HasField("drift_comparator")
    # An empty label is an error of its own (the run names it), never a disabled feature.
    schema = propose_schema(stats, "remark", "regression")
    assert {f.name: f.lifecycle_stage for f in schema.feature}["remark"] == \
        schema_pb2.UNKNOWN_STAGE
    # A stage already set is kept.
    kept = tfdv.infer_schema(stats)
    tfdv.get_feature(kept, "notes").lifecycle_stage = schema_pb2.DEPRECATED
    assert disable_empty_features(kept, stats.datasets, "y") == ["remark"]
    assert tfdv.get_feature(kept, "notes").lifecycle_stage == schema_pb2.DEPRECATED


def test_strings_with_too_many_values_for_a_domain_are_proposed_open_vocabularies():
    frame = pd.DataFrame({
        "date": [f"2023-{1 + i % 12:02d}-{1 + i % 28:02d}" for i in range(400)],  # 84 values
        "note": [f"free text {i % 150}" for i in range(400)],  # 150: too many for a domain
        "id": [f"c{i}" for i in range(400)], "plan": ["basic", "pro"] * 200,
        # Numbers a marker made text: propose says to fix the data, it marks nothing open.
        "income": ["NA" if i % 20 == 0 else str(1000 + i % 300) for i in range(400)],
        "empty": [np.nan] * 400, "y": [0, 1] * 200})
    stats = _stats(frame)
    schema = propose_schema(stats, "y", "binary_classification")
    tagged = {f.name for f in schema.feature if OPEN_VOCABULARY in f.annotation.tag}
    assert tagged == {"note"}, tagged  # date and plan have domains; an id is no feature
    assert declared_identifiers(schema) == ["id"]
    assert mark_open_vocabularies(schema, stats.datasets, "y") == []  # marked once


def test_numbers_written_with_a_missing_marker_are_named_with_the_marker():
    ages = [str(18 + i % 40) for i in range(200)]
    frame = pd.DataFrame({
        "age": ["NA" if i % 17 == 0 else a for i, a in enumerate(ages)],
        "income": ["?" if i % 23 == 0 else f"{1000 + 37 * i}" for i in range(200)],
        "plan": ["basic", "pro", "family", "NA"] * 50,  # words: categories, as they should be
        "size": [str(1 + i % 12) for i in range(199)] + ["XL"],  # a word among numbers: a value
        "few": ["1", "2", "NA"] * 66 + ["1", "2"],  # two numbers are not enough to tell
        "y": [0, 1] * 100})
    stats = _stats(frame)
    schema = propose_schema(stats, "y", "binary_classification")
    assert numbers_with_markers(schema, stats.datasets) == {"age": ["NA"], "income": ["?"]}


def test_proposals_declare_identifiers_the_data_shows_and_keep_the_curated_ones():
    frame = pd.DataFrame({"request_id": [f"r{i}" for i in range(200)],
                          "user_id": [f"u{i % 40}" for i in range(200)],
                          "c": ["a", "b"] * 100, "y": [0, 1] * 100})
    curated = propose_schema(_stats(frame), "y", "binary_classification")
    assert declared_identifiers(curated) == ["request_id"]  # unique per example
    declare_identifiers(curated, ["user_id"])  # a reviewer's declaration
    proposed = propose_schema(_stats(frame), "y", "binary_classification", curated=curated)
    assert declared_identifiers(proposed) == ["request_id", "user_id"]
    features = {f.name: f for f in proposed.feature}
    for name in ("request_id", "user_id"):
        assert not features[name].HasField("drift_comparator")
        assert not features[name].HasField("skew_comparator")
    assert features["c"].HasField("drift_comparator")


def test_csv_proposals_accept_empty_cells_for_sometimes_missing_columns():
    frame = pd.DataFrame({"x": [1.0, None] * 50, "y": [0.5, 1.5] * 50})
    schema = propose_schema(_stats(frame), "y", "regression", data_format="csv")
    x = next(f for f in schema.feature if f.name == "x")
    assert x.value_count.min == 0 and x.value_count.max == 1


def test_diff_names_added_removed_and_changed_features():
    old = load_schema(curated_schema_path("listening"))
    new = schema_pb2.Schema()
    new.CopyFrom(old)
    age = next(f for f in new.feature if f.name == "age")
    age.int_domain.max = 120
    new.feature.add(name="mood", type=schema_pb2.BYTES)
    gone = next(i for i, f in enumerate(new.feature) if f.name == "signup_days")
    del new.feature[gone]
    new.dataset_constraints.min_examples_count = 5
    lines = diff_schemas(old, new)
    text = "\n".join(lines)
    assert "+ feature mood (added)" in lines
    assert "- feature signup_days (removed)" in lines
    assert "~ feature age" in lines and "- max: 90" in text and "+ max: 120" in text
    assert "~ dataset-level settings" in lines and "+ min_examples_count: 5" in text
    assert diff_schemas(old, old) == []


@pytest.mark.parametrize("dataset, label", [("listening", "skipped"), ("taxi", "tips")])
def test_curated_schemas_carry_every_contract(dataset, label):
    schema = load_schema(curated_schema_path(dataset))
    assert list(schema.default_environment) == ["TRAINING", "SERVING"]
    assert schema.dataset_constraints.min_examples_count >= 1000
    identifiers = declared_identifiers(schema)
    for feature in schema.feature:
        if feature.name in identifiers:  # described, never compared
            assert not feature.HasField("drift_comparator"), feature.name
            assert not feature.HasField("skew_comparator"), feature.name
            continue
        assert feature.HasField("drift_comparator"), feature.name
        if feature.name == label:
            assert list(feature.not_in_environment) == [SERVING]
            assert not feature.HasField("skew_comparator")
        else:
            assert feature.HasField("skew_comparator"), feature.name
        numeric = feature.type in (schema_pb2.INT, schema_pb2.FLOAT)
        if numeric and feature.name != "pickup_census_tract":
            assert feature.WhichOneof("domain_info") is not None, feature.name


def _validate_profile(drift: str):
    chunks = list(listening.generate_chunks(4000, seed=2, drift=listening.parse_drift(drift)))
    frame = pd.concat([pd.DataFrame(c.columns) for c in chunks], ignore_index=True)
    for chunk_start, chunk in zip(range(0, 4000, listening.CHUNK_ROWS), chunks, strict=False):
        for name, present in chunk.present.items():
            frame.loc[chunk_start:chunk_start + len(chunk) - 1, name] = frame.loc[
                chunk_start:chunk_start + len(chunk) - 1, name
            ].where(present)
    schema = load_schema(curated_schema_path("listening"))
    anomalies = tfdv.validate_statistics(_stats(frame), schema, environment="TRAINING")
    return {name: {r.type for r in info.reason} for name, info in anomalies.anomaly_info.items()}


def test_curated_listening_schema_accepts_clean_and_drift_only_data():
    assert _validate_profile("") == {}
    assert _validate_profile("age_shift,skip_rate") == {}


def test_curated_listening_schema_rejects_schema_breaking_profiles():
    from tensorflow_metadata.proto.v0 import anomalies_pb2 as a

    assert a.AnomalyInfo.ENUM_TYPE_UNEXPECTED_STRING_VALUES in _validate_profile("new_country")["country"]
    assert a.AnomalyInfo.ENUM_TYPE_UNEXPECTED_STRING_VALUES in _validate_profile("new_device")["device"]
    impossible = _validate_profile("impossible_values")
    assert a.AnomalyInfo.INT_TYPE_SMALL_INT in impossible["age"]
    assert a.AnomalyInfo.FLOAT_TYPE_SMALL_FLOAT in impossible["duration_s"]
    missing = _validate_profile("missing_features")
    assert a.AnomalyInfo.FEATURE_TYPE_LOW_FRACTION_PRESENT in missing["device"]
    assert a.AnomalyInfo.FEATURE_TYPE_LOW_FRACTION_PRESENT in missing["popularity"]


def test_loader_errors_name_the_file(tmp_path):
    with pytest.raises(SchemaError, match="cannot read schema"):
        load_schema(str(tmp_path / "missing.pbtxt"))
    bad = tmp_path / "bad.pbtxt"
    bad.write_text("feature { name: ")
    with pytest.raises(SchemaError, match="does not parse"):
        load_schema(str(bad))


def test_fingerprint_changes_with_content():
    schema = load_schema(curated_schema_path("listening"))
    before = schema_fingerprint(schema)
    schema.feature[0].presence.min_fraction = 0.5
    assert schema_fingerprint(schema) != before


def test_missing_cells_against_a_fixed_shape_get_advice_on_what_to_do():
    """TFDV calls it INVALID_FEATURE_SHAPE; the run adds one line a person can act on."""
    from tandem.components.validation_gate import advice, anomaly_rows

    full = pd.DataFrame({"fare": [1.0, 2.0, 3.0] * 100, "city": ["a", "b", "c"] * 100})
    schema = tfdv.infer_schema(_stats(full))
    fare = next(f for f in schema.feature if f.name == "fare")
    fare.ClearField("presence")
    fare.shape.dim.add(size=1)
    holes = full.assign(fare=[1.0, None, 3.0] * 100)
    rows = [("train", *row) for row in anomaly_rows(tfdv.validate_statistics(_stats(holes), schema))]
    assert [(f, t) for _, f, t, _ in rows] == [("fare", "INVALID_FEATURE_SHAPE")]
    (line,) = advice(rows)
    assert line.startswith("fare: some rows lack a value, but the schema fixes the feature's shape")
    assert "tandem schema propose" in line and "value_count { min: 0 max: 1 }" in line
