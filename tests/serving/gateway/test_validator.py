"""The compiled validator flags what TFDV's per-example validation flags.

Kinds both support, with the same names: SCHEMA_MISSING_COLUMN, SCHEMA_NEW_COLUMN,
UNEXPECTED_DATA_TYPE, INVALID_FEATURE_SHAPE, INT_TYPE_SMALL_INT / BIG_INT,
FLOAT_TYPE_SMALL_FLOAT / BIG_FLOAT (Inf included), ENUM_TYPE_UNEXPECTED_STRING_VALUES.
Where they differ, and why:
- NaN: TFDV reports it through the float domain's minimum (FLOAT_TYPE_SMALL_FLOAT); tandem
  names it FLOAT_TYPE_HAS_NAN, TFDV's own name for NaN. Both flag the example.
- An empty value list on a fixed-shape int: TFDV adds INT_TYPE_SMALL_INT (the minimum of no
  values is taken as 0); tandem reports only INVALID_FEATURE_SHAPE. Both flag the example.
- An int outside a bool_domain: TFDV 1.16 does not check bool domains per example; tandem
  reports BOOL_TYPE_BIG_INT / BOOL_TYPE_SMALL_INT.
"""

import copy

import pytest
import tensorflow as tf
from tensorflow_metadata.proto.v0 import anomalies_pb2

from tandem.schemas import load_schema
from tandem.serving.gateway.validator import Validator
from tests.serving.gateway.conftest import SCHEMA, training_examples

DIFFERENT = {
    "duration_s:FLOAT_TYPE_HAS_NAN": "duration_s:FLOAT_TYPE_SMALL_FLOAT",
}


def _set(feature, kind, values):
    feature.Clear()
    getattr(feature, kind).value.extend(values)


BREAKS = {
    "missing_age": lambda f: f.pop("age"),
    "negative_age": lambda f: _set(f["age"], "int64_list", [-3]),
    "old_age": lambda f: _set(f["age"], "int64_list", [300]),
    "age_as_float": lambda f: _set(f["age"], "float_list", [30.0]),
    "age_as_bytes": lambda f: _set(f["age"], "bytes_list", [b"30"]),
    "two_ages": lambda f: _set(f["age"], "int64_list", [30, 40]),
    "duration_nan": lambda f: _set(f["duration_s"], "float_list", [float("nan")]),
    "duration_inf": lambda f: _set(f["duration_s"], "float_list", [float("inf")]),
    "duration_negative": lambda f: _set(f["duration_s"], "float_list", [-1.0]),
    "new_country": lambda f: _set(f["country"], "bytes_list", [b"NG"]),
    "new_device": lambda f: _set(f["device"], "bytes_list", [b"smart_tv"]),
    "hour_25": lambda f: _set(f["hour_of_day"], "int64_list", [25]),
    "unknown_feature": lambda f: _set(f["zzz"], "int64_list", [1]),
    "label_in_serving": lambda f: _set(f["skipped"], "int64_list", [1]),
    "missing_popularity_and_new_genre": lambda f: (
        f.pop("popularity"), _set(f["genre"], "bytes_list", [b"polka"])),
}


def _tfdv_violations(serialized: bytes, options) -> set[str]:
    from tensorflow_data_validation.api.validation_api import validate_instance
    from tfx_bsl.coders import example_coder

    batch = example_coder.ExamplesToRecordBatchDecoder().DecodeBatch([serialized])
    anomalies = validate_instance(batch, options, environment="SERVING")
    return {f"{name}:{anomalies_pb2.AnomalyInfo.Type.Name(r.type)}"
            for name, info in anomalies.anomaly_info.items() for r in info.reason}


@pytest.fixture(scope="module")
def corpus(listening_data):
    clean = []
    for data in training_examples(listening_data, 20):
        e = tf.train.Example.FromString(data)
        del e.features.feature["skipped"]
        clean.append(e)
    cases = [("clean", e) for e in clean[:5]]
    for i, (name, breaks) in enumerate(BREAKS.items()):
        e = copy.deepcopy(clean[5 + i % 15])
        breaks(e.features.feature)
        cases.append((name, e))
    return cases


# TFDV's statistics warn on the NaN example (numpy arithmetic on NaN): its noise, not ours.
@pytest.mark.filterwarnings("ignore:invalid value encountered:RuntimeWarning")
def test_validator_flags_exactly_what_tfdv_flags(corpus):
    import tensorflow_data_validation as tfdv

    schema = load_schema(SCHEMA)
    options = tfdv.StatsOptions(schema=schema)
    validator = Validator(schema)
    for name, example in corpus:
        ours = set(validator.validate(example))
        theirs = _tfdv_violations(example.SerializeToString(), options)
        assert bool(ours) == bool(theirs), (name, ours, theirs)
        assert {DIFFERENT.get(v, v) for v in ours} == theirs, (name, ours, theirs)
    assert sum(1 for name, e in corpus if validator.validate(e)) == len(BREAKS)


@pytest.mark.filterwarnings("ignore:invalid value encountered:RuntimeWarning")
def test_deprecated_and_disabled_features_are_left_alone_as_tfdv_leaves_them(corpus):
    """`schema propose` disables a column with no values; once the column fills (any type,
    any value) neither TFDV nor the gateway flags it, and it is not an unknown feature."""
    import tensorflow_data_validation as tfdv
    from tensorflow_metadata.proto.v0 import schema_pb2

    schema = load_schema(SCHEMA)
    tfdv.get_feature(schema, "age").lifecycle_stage = schema_pb2.DISABLED
    tfdv.get_feature(schema, "country").lifecycle_stage = schema_pb2.DEPRECATED
    options = tfdv.StatsOptions(schema=schema)
    validator = Validator(schema)
    left_alone = {"missing_age", "negative_age", "old_age", "age_as_float", "age_as_bytes",
                  "two_ages", "new_country"}
    for name, example in corpus:
        ours = set(validator.validate(example))
        theirs = _tfdv_violations(example.SerializeToString(), options)
        assert {DIFFERENT.get(v, v) for v in ours} == theirs, (name, ours, theirs)
        assert bool(ours) == (name != "clean" and name not in left_alone), (name, ours)


def test_documented_differences(listening_data):
    """The kinds where the two differ, pinned so that a TFDV upgrade that closes a gap shows."""
    import tensorflow_data_validation as tfdv

    schema = load_schema(SCHEMA)
    options = tfdv.StatsOptions(schema=schema)
    validator = Validator(schema)
    e = tf.train.Example.FromString(training_examples(listening_data, 1)[0])
    del e.features.feature["skipped"]
    e.features.feature["shuffle"].int64_list.value[0] = 2
    assert validator.validate(e) == ["shuffle:BOOL_TYPE_BIG_INT"]
    assert _tfdv_violations(e.SerializeToString(), options) == set()
    e.features.feature["shuffle"].int64_list.value[0] = 1
    e.features.feature["age"].Clear()
    e.features.feature["age"].int64_list.SetInParent()
    assert validator.validate(e) == ["age:INVALID_FEATURE_SHAPE"]
    assert _tfdv_violations(e.SerializeToString(), options) == {
        "age:INVALID_FEATURE_SHAPE", "age:INT_TYPE_SMALL_INT"}


def test_a_batch_is_checked_in_one_call(listening_data):
    validator = Validator(load_schema(SCHEMA))
    batch = []
    for i, data in enumerate(training_examples(listening_data, 64)):
        e = tf.train.Example.FromString(data)
        del e.features.feature["skipped"]
        if i % 10 == 3:
            e.features.feature["age"].int64_list.value[0] = -1
        batch.append(e)
    found = validator.validate_batch(batch)
    assert sorted(found) == [i for i in range(64) if i % 10 == 3]
    assert all(v == ["age:INT_TYPE_SMALL_INT"] for v in found.values())
