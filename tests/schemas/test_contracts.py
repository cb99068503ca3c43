"""The contracts every stage shares: the categorical rule and the class order."""

import pytest
from tensorflow_metadata.proto.v0 import schema_pb2

from tandem.components.features import feature_plan
from tandem.schemas import curated_schema_path, load_schema
from tandem.schemas.contracts import class_names, is_categorical
from tandem.schemas.identifiers import declared_identifiers
from tandem.schemas.propose import apply_contracts


def test_class_order_is_the_class_id_for_integers_and_sorted_for_names():
    # Transform's vocabulary comes ordered by frequency; the served order must not.
    assert class_names("multiclass_classification", "INT", "y", ["1", "0", "2"]) == ["0", "1", "2"]
    # Ids are positions even when a class never occurs: scores[:, 3] is class 3.
    assert class_names("multiclass_classification", "INT", "y", ["3", "0"]) == ["0", "1", "2", "3"]
    assert class_names("binary_classification", "INT", "y", ["1", "0"]) == ["0", "1"]
    assert class_names("multiclass_classification", "BYTES", "y",
                       ["kirsche", "banane", "äpfel"]) == ["banane", "kirsche", "äpfel"]
    assert class_names("binary_classification", "BYTES", "y", ["yes", "no"]) == ["no", "yes"]
    assert class_names("regression", "FLOAT", "y", []) == []
    with pytest.raises(ValueError, match="negative class id -2"):
        class_names("multiclass_classification", "INT", "y", ["-2", "1"])


def test_one_categorical_rule_for_transform_and_the_schema_comparators():
    """A boolean (bool_domain) feature such as `shuffle` is categorical for Transform (a
    vocabulary) and for the schema (L-infinity comparators), not one for one and numeric for
    the other."""
    schema = load_schema(curated_schema_path("listening"))
    plan = feature_plan(schema, "skipped", "binary_classification")
    identifiers = declared_identifiers(schema)
    for feature in schema.feature:
        if feature.name == "skipped":
            continue
        categorical = is_categorical(feature)
        if feature.name in identifiers:  # not model inputs, never compared: nothing to agree
            assert plan["features"][feature.name]["kind"] == "skip"
            continue
        assert (plan["features"][feature.name]["kind"] == "categorical") == categorical
        assert feature.drift_comparator.HasField("infinity_norm") == categorical, feature.name
        assert feature.skew_comparator.HasField("infinity_norm") == categorical, feature.name
    shuffle = next(f for f in schema.feature if f.name == "shuffle")
    assert is_categorical(shuffle)
    proposed = schema_pb2.Schema()
    proposed.feature.add(name="flag", type=schema_pb2.INT).bool_domain.SetInParent()
    proposed.feature.add(name="y", type=schema_pb2.INT)
    apply_contracts(proposed, "y", "binary_classification", 100)
    assert proposed.feature[0].drift_comparator.HasField("infinity_norm")
