"""The wire reader answers what the protobuf path answers, or hands the bytes back to it."""

import pytest
import tensorflow as tf
from tensorflow.core.example import example_pb2

from tandem.schemas import load_schema
from tandem.serving.gateway.decorate import key_of, key_of_entry
from tandem.serving.gateway.sources import Join
from tandem.serving.gateway.validator import Validator
from tandem.serving.gateway.wire import RequestReader
from tests.serving.gateway.conftest import SCHEMA, request_part, training_examples
from tests.serving.gateway.test_validator import BREAKS


def _set(feature, kind, values):
    feature.Clear()
    getattr(feature, kind).value.extend(values)


REQUEST_BREAKS = {
    "device_as_int": lambda f: _set(f["device"], "int64_list", [3]),
    "two_devices": lambda f: _set(f["device"], "bytes_list", [b"mobile", b"web"]),
    "empty_device": lambda f: f["device"].Clear(),
    "long_request_id": lambda f: _set(f["request_id"], "bytes_list", [b"r" * 300]),
    "user_id_as_int": lambda f: _set(f["user_id"], "int64_list", [7]),
    "user_id_not_utf8": lambda f: _set(f["user_id"], "bytes_list", [b"\xff\xfe"]),
    "no_user_id": lambda f: f.pop("user_id"),
    "hour_negative": lambda f: _set(f["hour_of_day"], "int64_list", [-1]),
}


@pytest.fixture(scope="module")
def validator():
    return Validator(load_schema(SCHEMA))


def _reader(validator):
    return RequestReader(validator.feature_verdict, validator.single_bytes,
                         uncached=frozenset({"request_id"}))


def _variants(listening_data):
    """Request parts as clients send them, each broken in one of the ways above."""
    out = {}
    for i, serialized in enumerate(training_examples(listening_data, 40)):
        request = request_part(serialized)
        out[f"clean-{i}"] = request.SerializeToString()
        out[f"deterministic-{i}"] = request.SerializeToString(deterministic=True)
    full = training_examples(listening_data, 1)[0]
    for name, breaks in REQUEST_BREAKS.items():
        example = request_part(full)
        breaks(example.features.feature)
        out[name] = example.SerializeToString(deterministic=True)
    for name, breaks in BREAKS.items():  # decorated examples, as the validator tests break them
        example = example_pb2.Example.FromString(full)
        breaks(example.features.feature)
        out[f"decorated-{name}"] = example.SerializeToString(deterministic=True)
    out["empty"] = b""
    return out


def _key(read_key, *args):
    try:
        return read_key(*args)
    except Exception as e:  # noqa: BLE001 - the error is what is compared
        return f"{type(e).__name__}: {e}"


def test_read_examples_give_the_parsed_verdicts_keys_and_ids(listening_data, validator):
    reader = _reader(validator)
    joins = [Join("user_id", "users", ("age",)), Join("track_id", "tracks", ("genre",))]
    for name, data in _variants(listening_data).items():
        for _ in range(2):  # read, then read again from the cache
            row = reader.read(data)
            assert row is not None, name
            example = example_pb2.Example.FromString(data)
            assert sorted(validator.validate_read([row], [[]]).get(0, [])) == \
                sorted(validator.validate_batch([example]).get(0, [])), name
            for join in joins:
                assert _key(key_of_entry, row, join, 0) == _key(key_of, example, join, 0), name
            features = example.features.feature
            assert set(row) == set(features), name
            for feature, entry in row.items():
                values = features[feature].bytes_list.value
                assert entry.first == (values[0] if values else None), (name, feature)
                assert entry.kind == features[feature].WhichOneof("kind"), (name, feature)


def _entry(key: bytes, value: bytes) -> bytes:
    body = b"\n" + bytes([len(key)]) + key + b"\x12" + bytes([len(value)]) + value
    return b"\n" + bytes([len(body)]) + body


def _example(*entries: bytes) -> bytes:
    body = b"".join(entries)
    return b"\n" + bytes([len(body)]) + body


def test_other_layouts_go_to_protobuf_and_a_repeated_key_keeps_the_last(validator):
    reader = _reader(validator)
    device = tf.train.Feature(bytes_list=tf.train.BytesList(value=[b"mobile"]))
    web = tf.train.Feature(bytes_list=tf.train.BytesList(value=[b"web"]))
    entry = _entry(b"device", device.SerializeToString())
    good = _example(entry)
    assert reader.read(good)["device"].first == b"mobile"
    value_then_key = b"\x12" + bytes([len(device.SerializeToString())]) + \
        device.SerializeToString() + b"\n\x06device"
    for other in (
        good + b"\x10\x01",  # an unknown field after the features
        good + good,  # `features` twice (protobuf merges them)
        _example(b"\n" + bytes([len(value_then_key)]) + value_then_key),
        good[:-1],  # cut short
        b"\xff not an example",
        _example(_entry(b"\xff\xfe", device.SerializeToString())),  # a key that is not UTF-8
    ):
        assert reader.read(other) is None, other
    twice = _example(entry, _entry(b"device", web.SerializeToString()))
    assert example_pb2.Example.FromString(twice).features.feature["device"] == web
    assert reader.read(twice)["device"].first == b"web"


def test_each_distinct_entry_is_checked_once_and_ids_are_not_kept(listening_data, validator):
    calls = []

    def verdict(name, feature):
        calls.append(name)
        return validator.feature_verdict(name, feature)

    reader = RequestReader(verdict, lambda name, value: None, uncached=frozenset({"request_id"}))
    data = request_part(training_examples(listening_data, 1)[0]).SerializeToString()
    reader.read(data)
    first = len(calls)
    reader.read(data)
    assert calls[first:] == ["request_id"]
    assert all(e.name != "request_id" for e in reader._cache.values())
