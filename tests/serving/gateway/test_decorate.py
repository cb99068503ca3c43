"""Decoration: one join for training and serving, batched, from SQLite or Redis."""

import pytest
import tensorflow as tf

from tandem.pipeline.datasets import listening
from tandem.serving.errors import InvalidArgument, NotFound
from tandem.serving.gateway.decorate import Decorator, parse_examples
from tandem.serving.gateway.sources import RedisSource, SourceError, SqliteSource, copy_to_redis
from tests.serving.gateway.conftest import request_part, training_examples, without_label


def _decorate(source, training, **kw):
    requests = [request_part(e) for e in training]
    return Decorator(listening.joins(), source, **kw).decorate(requests)


def test_gateway_join_rebuilds_the_generators_training_examples_byte_for_byte(listening_data):
    """The generator's training rows and the gateway's decorated requests come from the same
    function: for the same keys, identical bytes (the label is appended after)."""
    training = training_examples(listening_data, 500)
    source = SqliteSource(str(listening_data / "features.sqlite"))
    decorated, result = _decorate(source, training)
    assert [d + listening.label_fragment(listening.LABEL and tf.train.Example.FromString(t)
            .features.feature[listening.LABEL].int64_list.value[0])
            for d, t in zip(decorated, training, strict=False)] == training
    assert not result.unknown
    # Not vacuous: the request part alone lacks the joined features, and the decorated bytes
    # parse (protobuf merges the fragments) into the full example.
    assert request_part(training[0]).SerializeToString() != decorated[0]
    parsed = tf.train.Example.FromString(decorated[0]).features.feature
    assert parsed["age"].int64_list.value and parsed["genre"].bytes_list.value
    assert "skipped" not in parsed


def test_redis_and_sqlite_decorate_identically(listening_data, redis_url):
    sqlite_path = str(listening_data / "features.sqlite")
    counts = copy_to_redis(sqlite_path, redis_url)
    assert counts == {"users": 500, "tracks": 500}
    training = training_examples(listening_data, 300)
    sqlite = SqliteSource(sqlite_path)
    redis = RedisSource(redis_url)
    assert redis.version == sqlite.version  # the snapshot a logged example came from
    from_redis = _decorate(redis, training)[0]
    assert from_redis == _decorate(sqlite, training)[0]
    assert from_redis == [without_label(e) for e in training]


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
    training = training_examples(listening_data, 64)
    users = len({tf.train.Example.FromString(e).features.feature["user_id"].bytes_list.value[0]
                 for e in training})
    decorator = Decorator(listening.joins(), source, cache_s=0)
    decorator.decorate([request_part(e) for e in training])
    assert [table for table, _ in source.lookups] == ["users", "tracks"]
    assert source.lookups[0][1] == users  # each distinct key asked for once
    # With the cache, the same keys again cost no lookup at all.
    cached = Decorator(listening.joins(), source)
    cached.decorate([request_part(e) for e in training])
    cached.decorate([request_part(e) for e in training])
    assert len(source.lookups) == 4


def test_unknown_entity_is_filled_and_reported_or_rejected(listening_data):
    source = SqliteSource(str(listening_data / "features.sqlite"))
    example = request_part(training_examples(listening_data, 1)[0])
    example.features.feature["user_id"].bytes_list.value[0] = b"u999999"
    (data,), result = Decorator(listening.joins(), source, "default",
                                {"age": 48}).decorate([example])
    assert result.unknown == {0: ["user_id=u999999"]}
    parsed = tf.train.Example.FromString(data).features.feature
    assert parsed["age"].int64_list.value == [48]
    assert parsed["genre"].bytes_list.value  # the known track still joined
    with pytest.raises(NotFound, match="user_id 'u999999' is not in the feature source"):
        Decorator(listening.joins(), source, "reject").decorate([example])


def test_the_source_overrides_a_joined_column_the_client_sent(listening_data):
    source = SqliteSource(str(listening_data / "features.sqlite"))
    training = training_examples(listening_data, 1)
    example = request_part(training[0])
    example.features.feature["age"].int64_list.value.append(-40)
    (data,), _ = Decorator(listening.joins(), source).decorate([example])
    assert data == without_label(training[0])


def test_missing_or_mistyped_entity_key_is_invalid_argument(listening_data):
    source = SqliteSource(str(listening_data / "features.sqlite"))
    decorator = Decorator(listening.joins(), source)
    example = request_part(training_examples(listening_data, 1)[0])
    del example.features.feature["track_id"]
    with pytest.raises(InvalidArgument, match="example 0: entity key 'track_id' is missing"):
        decorator.decorate([example])
    example.features.feature["track_id"].int64_list.value.append(5)
    with pytest.raises(InvalidArgument, match="must be a string"):
        decorator.decorate([example])
    with pytest.raises(InvalidArgument, match="value 1 is not a serialized tf.Example"):
        parse_examples([example.SerializeToString(), b"\xff\xff"])


def test_no_joins_pass_examples_through_unchanged():
    e = tf.train.Example()
    e.features.feature["trip_miles"].float_list.value.append(1.5)
    data = e.SerializeToString()
    out, result = Decorator([], None).decorate([e], [data])
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


def test_a_source_that_cannot_answer_is_unavailable(listening_data, tmp_path):
    """A lookup that fails (the file replaced by junk under a running gateway) is UNAVAILABLE
    naming the source, as a model server that is down would be, never an unknown error."""
    import shutil
    import threading

    from tandem.serving.errors import Unavailable

    path = tmp_path / "features.sqlite"
    shutil.copy(listening_data / "features.sqlite", path)
    source = SqliteSource(str(path))
    path.write_bytes(b"not a database any more" * 100)
    errors = []

    def lookup():  # a new request thread opens its own connection, on the junk
        try:
            Decorator(listening.joins(), source, cache_s=0).decorate(
                [request_part(training_examples(listening_data, 1)[0])])
        except Unavailable as e:
            errors.append(str(e))

    thread = threading.Thread(target=lookup)
    thread.start()
    thread.join(30)
    assert len(errors) == 1 and f"feature source {path}" in errors[0], errors
