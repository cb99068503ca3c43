"""Decoration: one join for training and serving, batched, from SQLite or Redis."""

import pytest
import tensorflow as tf

from components.datasets import listening
from serving.errors import InvalidArgument, NotFound
from serving.gateway.decorate import decorate, decorate_serialized
from serving.gateway.sources import RedisSource, SourceError, SqliteSource, copy_to_redis
from tests.serving.gateway.conftest import request_part, training_examples, without_label


def _decorated(source, examples):
    serialized = [request_part(e).SerializeToString() for e in examples]
    out, _, result = decorate_serialized(serialized, listening.joins(), source)
    return out, result


def test_gateway_join_rebuilds_the_generators_training_examples_byte_for_byte(listening_data):
    """The generator's training rows and the gateway's decorated requests come from the same
    function: for the same keys, identical bytes (the label aside)."""
    training = training_examples(listening_data, 500)
    source = SqliteSource(str(listening_data / "features.sqlite"))
    decorated, result = _decorated(source, training)
    assert decorated == [without_label(e) for e in training]
    assert not result.unknown
    # Not vacuous: the request part alone lacks the joined features.
    assert request_part(training[0]).SerializeToString() != decorated[0]


def test_redis_and_sqlite_decorate_identically(listening_data, redis_url):
    sqlite_path = str(listening_data / "features.sqlite")
    counts = copy_to_redis(sqlite_path, redis_url)
    assert counts == {"users": 500, "tracks": 500}
    training = training_examples(listening_data, 300)
    sqlite = SqliteSource(sqlite_path)
    redis = RedisSource(redis_url)
    assert redis.version == sqlite.version  # the snapshot a logged example came from
    assert _decorated(redis, training)[0] == _decorated(sqlite, training)[0]


class CountingSource:
    """A real source that counts lookups (the contract: one per join per batch)."""

    def __init__(self, inner):
        self.inner, self.lookups = inner, []
        self.kind, self.version = inner.kind, inner.version

    def types(self, table):
        return self.inner.types(table)

    def lookup(self, join, keys):
        self.lookups.append((join.table, len(keys)))
        return self.inner.lookup(join, keys)


def test_a_batch_of_64_costs_one_lookup_per_source(listening_data):
    source = CountingSource(SqliteSource(str(listening_data / "features.sqlite")))
    _decorated(source, training_examples(listening_data, 64))
    assert source.lookups == [("users", 64), ("tracks", 64)]


def test_unknown_entity_is_filled_and_reported_or_rejected(listening_data):
    source = SqliteSource(str(listening_data / "features.sqlite"))
    example = request_part(training_examples(listening_data, 1)[0])
    example.features.feature["user_id"].bytes_list.value[0] = b"u999999"
    result = decorate([example], listening.joins(), source, "default", {"age": 48})
    assert result.unknown == {0: ["user_id=u999999"]}
    assert example.features.feature["age"].int64_list.value == [48]
    assert example.features.feature["genre"].bytes_list.value  # the known track still joined
    with pytest.raises(NotFound, match="user_id 'u999999' is not in the feature source"):
        decorate([example], listening.joins(), source, "reject")


def test_missing_or_mistyped_entity_key_is_invalid_argument(listening_data):
    source = SqliteSource(str(listening_data / "features.sqlite"))
    example = request_part(training_examples(listening_data, 1)[0])
    del example.features.feature["track_id"]
    with pytest.raises(InvalidArgument, match="example 0: entity key 'track_id' is missing"):
        decorate([example], listening.joins(), source)
    example.features.feature["track_id"].int64_list.value.append(5)
    with pytest.raises(InvalidArgument, match="must be a string"):
        decorate([example], listening.joins(), source)
    with pytest.raises(InvalidArgument, match="example 1 is not a serialized tf.Example"):
        decorate_serialized([example.SerializeToString(), b"\xff\xff"], listening.joins(), source)


def test_no_joins_pass_examples_through_unchanged():
    e = tf.train.Example()
    e.features.feature["trip_miles"].float_list.value.append(1.5)
    data = e.SerializeToString(deterministic=True)
    out, _, result = decorate_serialized([data], [], None)
    assert out == [data] and not result.unknown


def test_sources_name_what_is_wrong(tmp_path, redis_url):
    bad = tmp_path / "not.sqlite"
    bad.write_text("hello")
    with pytest.raises(SourceError, match="is not a SQLite database"):
        SqliteSource(str(bad))
    with pytest.raises(SourceError, match="No such file"):
        SqliteSource(str(tmp_path / "missing.sqlite"))
    with pytest.raises(SourceError, match="holds no tandem tables"):
        RedisSource(redis_url, prefix="empty")
    with pytest.raises(SourceError, match="is not a Redis address"):
        RedisSource("http://127.0.0.1:1")
