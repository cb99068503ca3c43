"""A running gateway switches feature-source snapshots between requests: under load no request
fails or mixes two snapshots, and each logged record names the snapshot that decorated it. A
snapshot that cannot replace the current one is refused, and the gateway keeps serving."""

import re
import shutil
import sqlite3
import threading

import pytest
from tensorflow.core.example import example_pb2

from tandem.schemas.request_log import read_records
from tandem.serving.gateway.sources import SourceError, SqliteSource, copy_to_redis
from tests.serving.gateway.conftest import (
    gateway_config,
    predict_request,
    request_part,
    stub,
    training_examples,
)


def older_users(data_dir, path, years: int = 3) -> str:
    """A copy of the feature file whose users are `years` older: a snapshot that changes one
    column of every user."""
    path.parent.mkdir(exist_ok=True)
    shutil.copy(data_dir / "features.sqlite", path)
    with sqlite3.connect(path) as con:
        con.execute("UPDATE users SET age = age + ?", (years,))
    con.close()
    return str(path)


def _ages(path: str) -> dict[str, int]:
    con = sqlite3.connect(path)
    try:
        return dict(con.execute("SELECT user_id, age FROM users"))
    finally:
        con.close()


def _switch_under_load(gw, requests, switch) -> list:
    """4 client threads send requests while `switch()` runs once; the errors they saw."""
    errors, sent, stop = [], [0], threading.Event()

    def client(k):
        s, i = stub(gw.port), k
        while not stop.is_set():
            try:
                s.Predict(predict_request([requests[i % len(requests)]]), timeout=30)
                sent[0] += 1
            except Exception as e:  # noqa: BLE001 - every failure counts
                errors.append(e)
            i += 4

    threads = [threading.Thread(target=client, args=(k,)) for k in range(4)]
    for t in threads:
        t.start()
    while sent[0] < 40:
        stop.wait(0.01)
    switch()
    seen = sent[0]
    while sent[0] < seen + 40:
        stop.wait(0.01)
    stop.set()
    for t in threads:
        t.join()
    return errors


def _check_log(log_dir, ages_by_version: dict[str, dict[str, int]], kind: str) -> None:
    """Every record names one version, and the ages it carries are that version's."""
    versions = []
    for record in read_records(str(log_dir)):
        version = record.sources[kind]
        versions.append(version)
        for data in record.examples():
            f = example_pb2.Example.FromString(data).features.feature
            user = f["user_id"].bytes_list.value[0].decode()
            assert f["age"].int64_list.value == [ages_by_version[version][user]]
    old, new = list(ages_by_version)
    assert versions[0] == old and set(versions) == {old, new}  # switched mid-load


def test_sqlite_switch_under_load(model_server, listening_data, start_gateway, tmp_path):
    gw = start_gateway(gateway_config(tmp_path, listening_data,
                                      f"127.0.0.1:{model_server.grpc_port}"))
    old_path = str(listening_data / "features.sqlite")
    new_path = older_users(listening_data, tmp_path / "users-older.sqlite")
    old, new = SqliteSource(old_path).version, SqliteSource(new_path).version
    requests = [request_part(e).SerializeToString() for e in training_examples(listening_data, 80)]
    errors = _switch_under_load(gw, requests, lambda: gw.gateway.switch_source(new_path))
    assert errors == []
    assert gw.gateway.source_versions == {"sqlite": new}
    gw.stop()
    _check_log(tmp_path / "logs", {old: _ages(old_path), new: _ages(new_path)}, "sqlite")


def test_redis_switch_under_load(model_server, listening_data, start_gateway, redis_server,
                                 tmp_path):
    old_path = str(listening_data / "features.sqlite")
    new_path = older_users(listening_data, tmp_path / "users-older.sqlite")
    old_url, new_url = f"{redis_server.url}/0", f"{redis_server.url}/1"
    copy_to_redis(old_path, old_url)
    copy_to_redis(new_path, new_url)
    gw = start_gateway(gateway_config(tmp_path, listening_data,
                                      f"127.0.0.1:{model_server.grpc_port}",
                                      decorate={"redis": old_url}))
    old, new = SqliteSource(old_path).version, SqliteSource(new_path).version
    requests = [request_part(e).SerializeToString() for e in training_examples(listening_data, 80)]
    errors = _switch_under_load(gw, requests, lambda: gw.gateway.switch_source(new_url))
    assert errors == []
    gw.stop()
    _check_log(tmp_path / "logs", {old: _ages(old_path), new: _ages(new_path)}, "redis")


def bad_snapshots(data_dir, tmp_path) -> dict[str, tuple[str, str]]:
    """{case: (path, what the refusal says)}."""
    unreadable = tmp_path / "unreadable.sqlite"
    unreadable.write_bytes(b"not a database" * 100)
    no_age = tmp_path / "no-age.sqlite"
    shutil.copy(data_dir / "features.sqlite", no_age)
    with sqlite3.connect(no_age) as con:
        con.execute("ALTER TABLE users DROP COLUMN age")
    con.close()
    int_keys = tmp_path / "int-keys.sqlite"
    shutil.copy(data_dir / "features.sqlite", int_keys)
    with sqlite3.connect(int_keys) as con:
        columns = [r[1] for r in con.execute("PRAGMA table_info(users)")]
        con.execute("ALTER TABLE users RENAME TO old_users")
        con.execute("CREATE TABLE users (user_id INTEGER PRIMARY KEY, "
                    + ", ".join(c for c in columns if c != "user_id") + ")")
    con.close()
    return {"unreadable": (str(unreadable), "not a SQLite database"),
            "missing column": (str(no_age), "no column(s) age"),
            "key type": (str(int_keys), "key column 'user_id' holds INT"),
            "missing file": (str(tmp_path / "nowhere.sqlite"), "No such file")}


def test_a_bad_snapshot_is_refused_and_the_old_one_serves(model_server, listening_data,
                                                          start_gateway, tmp_path):
    gw = start_gateway(gateway_config(tmp_path, listening_data,
                                      f"127.0.0.1:{model_server.grpc_port}"))
    before = dict(gw.gateway.source_versions)
    (request,) = (request_part(e).SerializeToString()
                  for e in training_examples(listening_data, 1))
    for case, (path, says) in bad_snapshots(listening_data, tmp_path).items():
        with pytest.raises(SourceError, match=re.escape(says)):
            gw.gateway.switch_source(path)
        assert gw.gateway.source_versions == before, case
        stub(gw.port).Predict(predict_request([request]), timeout=30)


@pytest.mark.slow
def test_promote_and_rollback_switch_a_running_gateway(model_server, listening_data, tmp_path):
    """The commands against a gateway process: a refused promote says why in one line, exits
    2 and leaves nothing behind; a promote and a rollback are seen from the next request."""
    import os
    import queue
    import signal
    import subprocess
    import sys

    from tests.conftest import ROOT, tandem
    from tests.serving.conftest import free_port

    config = gateway_config(tmp_path, listening_data, f"127.0.0.1:{model_server.grpc_port}")
    old_path = str(listening_data / "features.sqlite")
    new_path = older_users(listening_data, tmp_path / "snapshots" / "users-older.sqlite")
    old, new = SqliteSource(old_path).version, SqliteSource(new_path).version
    port = free_port()
    proc = subprocess.Popen([sys.executable, "-m", "tandem.pipeline.cli", "serve", "gateway",
                             "--gateway-config", config, "--port", str(port)], cwd=ROOT,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    (request,) = (request_part(e).SerializeToString()
                  for e in training_examples(listening_data, 1))

    def call():
        stub(port).Predict(predict_request([request]), timeout=30)

    lines = queue.Queue()
    threading.Thread(target=lambda: [lines.put(line) for line in proc.stdout], daemon=True
                     ).start()

    def said(start: str) -> str:
        while True:
            line = lines.get(timeout=60)
            if line.startswith(start):
                return line

    try:
        said("gRPC on")
        call()
        for case, (path, says) in bad_snapshots(listening_data, tmp_path).items():
            refused = tandem("features", "promote", "--gateway", config, "--to", path,
                             timeout=120)
            assert refused.returncode == 2, (case, refused.stderr)
            assert refused.stderr.count("\n") == 1 and says in refused.stderr, case
        left = sorted(os.listdir(tmp_path))
        assert not [n for n in left if n.endswith(".lock") or n.endswith(".sources.json")], left
        promoted = tandem("features", "promote", "--gateway", config, "--to", new_path,
                          timeout=120)
        assert promoted.returncode == 0, promoted.stderr
        assert "1 running gateway process(es)" in promoted.stdout
        assert new in said("gateway: decorating from")
        call()
        rolled = tandem("features", "rollback", "--gateway", config, timeout=120)
        assert rolled.returncode == 0, rolled.stderr
        assert old in said("gateway: decorating from")
        call()
        again = tandem("features", "rollback", "--gateway", config, timeout=120)
        assert again.returncode == 2 and "nothing to roll back to" in again.stderr
        proc.send_signal(signal.SIGTERM)
        proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert [r.sources["sqlite"] for r in read_records(str(tmp_path / "logs"))] == \
        [old, new, old]
    assert os.listdir(f"{config}.gateways") == []  # the gateway's entry left with it
    assert not [n for n in os.listdir(tmp_path) if n.endswith(".lock")]
