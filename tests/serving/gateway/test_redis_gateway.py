"""Redis as the gateway's feature source: `tandem features load` fills a real redis-server on
127.0.0.1, a running gateway decorates from it (not from the SQLite file), and a Redis that goes
away is an answer with a status, not a crash."""

import grpc
import numpy as np
import pytest
import redis
import tensorflow as tf
from tensorflow.core.example import example_pb2

from tandem.schemas.request_log import read_records
from tandem.serving.gateway.sources import SqliteSource
from tests.conftest import tandem
from tests.serving.conftest import free_port
from tests.serving.gateway.conftest import (
    gateway_config,
    predict_request,
    request_part,
    stub,
    training_examples,
    without_label,
)


def _feature(serialized: bytes, name: str):
    f = example_pb2.Example.FromString(serialized).features.feature[name]
    return (f.int64_list.value or f.float_list.value or f.bytes_list.value)[0]


def test_features_load_then_a_gateway_decorates_from_redis(model_server, listening_data,
                                                           redis_server, start_gateway,
                                                           tmp_path):
    sqlite = str(listening_data / "features.sqlite")
    loaded = tandem("features", "load", "--sqlite", sqlite, "--to", redis_server.url,
                    timeout=120)
    assert loaded.returncode == 0, loaded.stderr
    assert f"loaded users (500 rows), tracks (500 rows) into {redis_server.url} in " \
        in loaded.stdout
    client = redis.Redis.from_url(redis_server.url)
    version = SqliteSource(sqlite).version
    assert client.hget("tandem:meta", "version").decode() == version
    training = training_examples(listening_data, 20)
    # One user's age changed in Redis only: the gateway's answer must come from Redis.
    user = _feature(training[0], "user_id").decode()
    assert int(client.hget(f"tandem:users:{user}", "age")) == _feature(training[0], "age")
    client.hset(f"tandem:users:{user}", "age", 79)
    changed = {i for i, e in enumerate(training) if _feature(e, "user_id").decode() == user}

    # The SQLite file stays configured too: Redis, when set, is the one used.
    gw = start_gateway(gateway_config(tmp_path, listening_data,
                                      f"127.0.0.1:{model_server.grpc_port}",
                                      decorate={"redis": redis_server.url}))
    assert gw.gateway.source.kind == "redis"
    requests = [request_part(e).SerializeToString() for e in training]
    answers = [tf.make_ndarray(stub(gw.port).Predict(predict_request([r]), timeout=30)
                               .outputs["probabilities"])[0] for r in requests]
    direct = tf.make_ndarray(stub(model_server.grpc_port).Predict(predict_request(
        [without_label(e) for e in training]), timeout=30).outputs["probabilities"])
    same = [i for i in range(20) if i not in changed]
    np.testing.assert_allclose(np.array(answers)[same], direct[same], rtol=1e-6)
    assert all(abs(answers[i] - direct[i]) > 1e-3 for i in changed)  # age 79 scores apart

    # Redis goes away: an entity not cached yet cannot be decorated. The caller gets
    # UNAVAILABLE naming the feature source; the gateway stays up and counts it.
    redis_server.stop()
    stranger = training_examples(listening_data, 400)[-1]
    assert _feature(stranger, "user_id") not in {_feature(e, "user_id") for e in training}
    with pytest.raises(grpc.RpcError) as info:
        stub(gw.port).Predict(predict_request([request_part(stranger).SerializeToString()]),
                              timeout=30)
    assert info.value.code() == grpc.StatusCode.UNAVAILABLE, info.value.details()
    assert "feature source" in info.value.details() and redis_server.url in \
        info.value.details()
    cached = stub(gw.port).Predict(predict_request(requests[1:2]), timeout=30)
    assert tf.make_ndarray(cached.outputs["probabilities"])[0] == answers[1]
    metrics = gw.gateway.metrics.exposition().decode()
    assert 'tandem_gateway_requests_total{api="predict",code="UNAVAILABLE"} 1.0' in metrics
    gw.stop()

    records = [r for r in read_records(str(tmp_path / "logs")) if r.role == "primary"]
    assert len(records) == 21  # 20, and the cached one again; the undecorated one is not
    assert all(r.sources == {"redis": version} for r in records)
    logged = {r.request_id: r for r in records}
    first_id = _feature(training[0], "request_id").decode()
    assert _feature(logged[first_id].examples()[0], "age") == 79
    second_id = _feature(training[1], "request_id").decode()
    assert example_pb2.Example.FromString(logged[second_id].examples()[0]) == \
        example_pb2.Example.FromString(without_label(training[1]))
    assert _feature(stranger, "request_id").decode() not in logged


def test_features_load_prefix_and_bad_input(listening_data, redis_server, tmp_path):
    sqlite = str(listening_data / "features.sqlite")
    done = tandem("features", "load", "--sqlite", sqlite, "--to", redis_server.url,
                  "--prefix", "staging", timeout=120)
    assert done.returncode == 0, done.stderr
    client = redis.Redis.from_url(redis_server.url)
    assert client.exists("staging:meta") and not client.exists("tandem:meta")
    assert len(client.keys("staging:users:*")) == 500
    for args, message in (
            (["--to", "http://127.0.0.1:6379"], "is not a Redis address; use redis://HOST:PORT"),
            (["--to", f"redis://127.0.0.1:{free_port()}"], "cannot load redis://127.0.0.1:"),
            (["--sqlite", str(tmp_path / "missing.sqlite"), "--to", redis_server.url],
             "No such file")):
        bad = tandem("features", "load", *(["--sqlite", sqlite] if "--sqlite" not in args
                                           else []), *args, timeout=120)
        assert bad.returncode == 2, (args, bad.stdout, bad.stderr)
        assert message in bad.stderr and bad.stderr.count("\n") == 1, (args, bad.stderr)
    # A gateway pointed at a Redis with no tables refuses to start, naming the fix.
    config = gateway_config(tmp_path, listening_data, "127.0.0.1:1",
                            decorate={"sqlite": "", "redis": redis_server.url})
    refused = tandem("serve", "gateway", "--gateway-config", config, "--port", "0", timeout=120)
    assert refused.returncode == 2
    assert "holds no tandem tables under 'tandem:'" in refused.stderr
    assert "tandem features load" in refused.stderr
