"""Shadow replay with candidate features: logged requests re-decorated from another snapshot
with the gateway's Decorator, B answering on them, the divergence attributed to columns."""

import json
import os
import shutil
import sqlite3

import pytest
import tensorflow as tf

from tandem.components.shadow.replay import ReplayConfig
from tandem.pipeline.datasets import listening
from tandem.pipeline.feature_checks import redecoration_spec, run_features_replay
from tandem.serving.redecorate import Redecorator
from tests.components.shadow.conftest import render_failed_report, write_log
from tests.conftest import tandem
from tests.serving.gateway.conftest import (
    RedisServer,
    gateway_config,
    make_listening_model,
    training_examples,
    without_label,
)

pytestmark = pytest.mark.xdist_group("replay")


def snapshot(root, name: str, *sql: str) -> str:
    """A copy of the generator's features.sqlite changed by `sql`."""
    path = str(root / f"{name}.sqlite")
    shutil.copy(root / "data" / "features.sqlite", path)
    con = sqlite3.connect(path)
    with con:
        for statement in sql:
            con.execute(statement)
    con.close()
    return path


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    """Decorated listening examples as the gateway served and logged them (8 a request),
    models A and B (another bias), the gateway config that decorated them, and snapshots."""
    root = tmp_path_factory.mktemp("features-replay")
    listening.generate(str(root / "data"), 1200, seed=3)
    served = [without_label(x) for x in training_examples(root / "data")]
    for name, bias in (("a", 0.0), ("b", 0.3)):
        (root / name).mkdir()
        make_listening_model(str(root / name), 1, bias)
    write_log(str(root / "a" / "1"), served, str(root / "logs"))
    config = gateway_config(root, root / "data", "127.0.0.1:8500")
    users = [tf.train.Example.FromString(d).features.feature["user_id"].bytes_list.value[0]
             .decode() for d in served]
    return {"root": root, "served": served, "config": config, "users": users,
            "same": snapshot(root, "same"),
            "months": snapshot(root, "months", "UPDATE users SET age = age * 12"),
            "missing": snapshot(root, "missing", f"DELETE FROM users WHERE user_id IN "
                                f"('{users[0]}', '{users[1]}')")}


def replay(setup, tmp_path, candidate_features, candidate="a", **thresholds):
    root = setup["root"]
    config = ReplayConfig()
    for key, value in thresholds.items():
        setattr(config.thresholds, key, value)
    return run_features_replay(str(root / "logs"), str(root / "a"), str(root / candidate),
                               str(tmp_path), setup["config"], candidate_features, config)


@pytest.mark.slow
def test_the_same_snapshot_gives_the_logged_bytes_back_and_zero_flips(setup, tmp_path):
    spec, _ = redecoration_spec(setup["config"], setup["same"])
    redecorator = Redecorator(spec)
    again = redecorator.redecorate(setup["served"])
    redecorator.close()
    assert again.data == setup["served"]  # byte for byte
    assert not any(again.changed) and not any(again.missing) and not any(again.unknown)
    report = replay(setup, tmp_path, setup["same"])
    assert report["overall"]["symmetric_flip_rate"]["value"] == 0.0
    assert report["overall"]["abs_delta"]["max"] == 0.0
    assert report["parity"]["mismatched"] == 0
    f = report["features"]
    assert f["redecorated_differently"] == 0 and f["divergent"] == 0 and f["blamed"] == []
    assert report["verdict"]["passed"]


@pytest.mark.slow
def test_a_snapshot_that_changes_one_column_is_attributed_to_it_alone(setup, tmp_path):
    report = replay(setup, tmp_path, setup["months"])
    f = report["features"]
    assert f["blamed"] == ["age"]
    assert f["columns"]["age"]["changed"] == len(setup["served"])
    assert f["columns"]["age"]["share"] == pytest.approx(1.0, abs=1e-6)
    assert all(m["changed"] == 0 and m["share"] == 0 for c, m in f["columns"].items()
               if c != "age")
    assert f["model_share"] == 0.0
    assert report["overall"]["symmetric_flip_rate"]["value"] > 0.2
    assert not report["verdict"]["passed"]
    html = (tmp_path / "report.html").read_text()
    assert "Candidate features: attribution" in html and "<b>age</b>" in html
    render_failed_report(tmp_path, figures=3)
    # B's inputs are the re-decorated examples: their age is in months.
    first = tf.train.Example.FromString(tf.data.TFRecordDataset(
        str(tmp_path / "divergent.tfrecord.gz"), compression_type="GZIP")
        .take(1).get_single_element().numpy())
    assert first.features.feature["age"].int64_list.value[0] > 150


@pytest.mark.slow
def test_a_model_and_a_snapshot_change_together_are_told_apart(setup, tmp_path):
    report = replay(setup, tmp_path, setup["months"], candidate="b")
    f = report["features"]
    assert f["blamed"][0] == "age" and f["model_share"] > 0.0
    assert f["columns"]["age"]["share"] > f["model_share"]


@pytest.mark.slow
@pytest.mark.parametrize("candidate", ["a", "b"])
def test_a_column_changed_alone_is_attributed_as_if_swapped_in_alone(setup, tmp_path,
                                                                      candidate):
    """Where age alone changed, its solo effect is B's answer on the re-decorated example (no
    second run); where popularity changed too, age is swapped in alone and B runs again. The
    two ways give age the same effect on the same requests, with the same model as A and with
    another one (whose own change is measured from B on the logged example)."""
    both = snapshot(setup["root"], f"both-{candidate}", "UPDATE users SET age = age * 12",
                    "UPDATE tracks SET popularity = popularity * 0.5")
    alone = replay(setup, tmp_path / "alone", setup["months"], candidate=candidate)
    alone = alone["features"]["columns"]["age"]
    together = replay(setup, tmp_path / "both", both, candidate=candidate)["features"]
    assert together["columns"]["popularity"]["changed_divergent"] > 0
    age = together["columns"]["age"]
    assert age["changed_divergent"] >= alone["changed_divergent"] > 0
    effect_alone = alone["mean_effect"] * alone["changed_divergent"]
    assert age["mean_effect"] * age["changed_divergent"] == pytest.approx(effect_alone, rel=1e-3)
    assert effect_alone > 0


def _other_layout(logged: bytes) -> bytes:
    """The same tf.Example in a layout the wire reader does not walk: the request's feature
    entries in two `features` fields (protobuf merges them), then the fragments."""
    from tandem.serving.redecorate import _fields

    (_, begin, p, q), *fragments = list(_fields(logged))
    entries = [logged[b:e] for _, b, _, e in _fields(logged, p, q)]

    def field(parts):
        body = b"".join(parts)
        return b"\n" + bytes([len(body)]) + body if len(body) < 128 else \
            b"\n" + bytes([len(body) & 0x7F | 0x80, len(body) >> 7]) + body

    half = len(entries) // 2
    return field(entries[:half]) + field(entries[half:]) + logged[q:]


def _example(data: bytes) -> tf.train.Example:
    return tf.train.Example.FromString(data)


def test_every_way_of_reading_the_keys_gives_the_same_redecoration(setup, monkeypatch):
    """The entity keys of a batch are read by TensorFlow's example parser; when it declines,
    at the wire (the gateway's reader); for bytes the reader does not walk, by protobuf. Each
    way gives the same examples, changes, missing and unknown entities, for a changed and a
    missing entity alike, and bytes in another layout give what the gateway's layout gives."""
    from tandem.serving.gateway.decorate import Decorator

    used: list[str] = []
    for name in ("decorate_keys", "decorate_read", "decorate"):
        method = getattr(Decorator, name)
        monkeypatch.setattr(Decorator, name, lambda self, *a, _m=method, _n=name: (
            used.append(_n), _m(self, *a))[1])
    served = setup["served"][:300]
    other = [_other_layout(d) for d in served]
    for d, o in zip(served, other, strict=True):
        assert d != o and _example(d) == _example(o)
    for candidate in ("months", "missing"):
        spec, _ = redecoration_spec(setup["config"], setup[candidate])
        results = {}
        for way in ("parser", "reader", "protobuf"):
            redecorator = Redecorator(spec)
            if way != "parser":
                redecorator._keys = lambda stripped: None
            if way == "protobuf":
                redecorator._reader.read = lambda data: None
            used.clear()
            redecorated = redecorator.redecorate(served)
            assert set(used) == {{"parser": "decorate_keys", "reader": "decorate_read",
                                  "protobuf": "decorate"}[way]}, (way, used)
            results[way] = (redecorated, redecorator.swap(served, "age"))
            if way == "parser":
                results["other layout"] = (redecorator.redecorate(other),
                                           redecorator.swap(other, "age"))
            redecorator.close()
        first, swapped = results["parser"]
        for way, (again, swapped_again) in results.items():
            assert [_example(d) for d in again.data] == [_example(d) for d in first.data], way
            assert again.changed == first.changed and any(first.changed), way
            assert again.missing == first.missing and again.unknown == first.unknown, way
            assert [_example(d) for d in swapped_again] == [_example(d) for d in swapped], way
        assert any(first.missing) == (candidate == "missing")
        ages = {_example(d).features.feature["age"].int64_list.value[0] for d in first.data}
        assert max(ages) > 150 or candidate == "missing"  # months, from the candidate


def _with_key_entry(logged: bytes, entry: bytes) -> bytes:
    """The logged example with one more map entry for its features (its own `features`
    field, which protobuf merges: a key named again replaces the first)."""
    from tandem.serving.redecorate import _encode_varint

    field = b"\n" + _encode_varint(len(entry)) + entry
    return logged + b"\n" + _encode_varint(len(field)) + field


def test_keys_in_unusual_shapes_are_read_as_the_gateway_reads_them(setup):
    """Keys the gateway accepts in shapes TensorFlow's parser reads otherwise than protobuf
    may: named twice (the last counts), holding two values (the first counts), or a Feature
    holding a bytes list, a float list and a bytes list again (the last list counts). Each is
    re-decorated exactly as the gateway's readers alone re-decorate it, from the user it
    names."""
    from tandem.serving.redecorate import _encode_varint

    served, users = setup["served"][:50], setup["users"][:50]
    other = next(u for u in setup["users"] if u != users[0]).encode()
    third = next(u for u in setup["users"] if u not in (users[0], other.decode())).encode()

    def entry(feature: bytes) -> bytes:
        return b"\n\x07user_id\x12" + _encode_varint(len(feature)) + feature

    def bytes_list(*values: bytes) -> bytes:
        body = b"".join(b"\n" + _encode_varint(len(v)) + v for v in values)
        return b"\n" + _encode_varint(len(body)) + body

    shapes = {
        "named twice": (entry(bytes_list(other)), other),
        "two values": (entry(bytes_list(other, third)), other),
        "other lists": (entry(bytes_list(third) + b"\x12\x06\n\x04\x00\x00\x80?"
                              + bytes_list(other)), other),
    }
    spec, _ = redecoration_spec(setup["config"], setup["months"])
    fast, readers = Redecorator(spec), Redecorator(spec)
    readers._keys = lambda stripped: None
    con = sqlite3.connect(setup["months"])
    for name, (extra, user) in shapes.items():
        batch = [_with_key_entry(served[0], extra)] + served[1:]
        parsed = _example(batch[0]).features.feature["user_id"]
        assert parsed.WhichOneof("kind") == "bytes_list" and parsed.bytes_list.value[0] == \
            user, name  # protobuf, as the gateway, reads this user
        again, alone = fast.redecorate(batch), readers.redecorate(batch)
        assert again.data == alone.data and again.changed == alone.changed, name
        (months,) = con.execute("SELECT age FROM users WHERE user_id = ?",
                                (user.decode(),)).fetchone()
        assert list(_example(again.data[0]).features.feature["age"].int64_list.value) == \
            [months], name
    con.close()
    fast.close()
    readers.close()


def test_changed_columns_do_not_depend_on_how_the_fragments_were_laid_out(setup):
    """Which columns a candidate changed is read per join from the logged fragment against
    the new one; fragments in another order, merged into one field or partly absent give
    the same columns as the gateway's own layout."""
    from tandem.serving.redecorate import _fields

    def layouts(logged: bytes) -> dict[str, bytes]:
        (_, _, _, end), *fragments = list(_fields(logged))
        request, parts = logged[:end], [logged[b:e] for _, b, _, e in fragments]
        body = b"".join(logged[b:e] for _, _, p, q in fragments for _, b, _, e in
                        _fields(logged, p, q))
        merged = b"\n" + bytes([len(body) & 0x7F | 0x80, len(body) >> 7]) + body
        return {"reversed": request + b"".join(reversed(parts)), "merged": request + merged,
                "first only": request + parts[0]}

    served = setup["served"][:200]
    both = snapshot(setup["root"], "both-layouts", "UPDATE users SET age = age * 12",
                    "UPDATE tracks SET popularity = popularity * 0.5")
    spec, _ = redecoration_spec(setup["config"], both)
    redecorator = Redecorator(spec)
    usual = redecorator.redecorate(served).changed
    assert {c for cols in usual for c in cols} == {"age", "popularity"}
    for name in ("reversed", "merged"):
        other = redecorator.redecorate([layouts(d)[name] for d in served]).changed
        assert other == usual, name
    # Without the second join's fragment, its columns read as changed wherever the candidate
    # has a value for them: the logged example had none.
    partial = redecorator.redecorate([layouts(d)["first only"] for d in served]).changed
    tracks = {c for j in spec.joins if j[1] == "tracks" for c in j[2]}
    assert all(tracks <= set(p) and set(p) - tracks == set(u) - tracks
               for p, u in zip(partial, usual, strict=True))
    redecorator.close()


@pytest.mark.slow
def test_missing_entities_are_counted_and_gated(setup, tmp_path):
    expected = sum(u in setup["users"][:2] for u in setup["users"])
    report = replay(setup, tmp_path / "gated", setup["missing"])
    assert report["features"]["missing_entities"] == expected
    check = next(c for c in report["verdict"]["checks"] if c["check"].startswith("missing"))
    assert check["value"] == expected and check["limit"] == 0 and not check["passed"]
    allowed = replay(setup, tmp_path / "allowed", setup["missing"],
                     max_missing_entities=expected)
    check = next(c for c in allowed["verdict"]["checks"] if c["check"].startswith("missing"))
    assert check["passed"]


@pytest.mark.slow
def test_sqlite_and_redis_snapshots_give_identical_reports(setup, tmp_path):
    from tandem.serving.gateway.sources import copy_to_redis

    server = RedisServer()
    try:
        copy_to_redis(setup["months"], server.url, prefix="candidate")
        url = f"{server.url}?prefix=candidate"
        from_sqlite = replay(setup, tmp_path / "sqlite", setup["months"])
        from_redis = replay(setup, tmp_path / "redis", url)
        diff_sqlite = tandem("features", "diff", "--from", setup["same"], "--to",
                             setup["months"], "--out", str(tmp_path / "d-sqlite"))
        diff_redis = tandem("features", "diff", "--from", setup["same"], "--to", url,
                            "--out", str(tmp_path / "d-redis"))
    finally:
        server.stop()
    assert from_redis["features"]["candidate"].startswith("redis@")
    for report in (from_sqlite, from_redis):
        report["features"].pop("candidate")
        report.pop("inference")
    assert from_sqlite == from_redis
    assert diff_sqlite.returncode == 0 and diff_redis.returncode == 0, diff_redis.stderr
    one, two = (json.loads((tmp_path / d / "diff.json").read_text())
                for d in ("d-sqlite", "d-redis"))
    assert two["to"].startswith("redis@")
    for report in (one, two):
        report.pop("to")
        report.pop("sources")
    assert one == two


@pytest.mark.slow
def test_bad_candidate_snapshots_are_one_line_and_exit_2(setup, tmp_path):
    root = setup["root"]
    garbage = tmp_path / "garbage.sqlite"
    garbage.write_bytes(b"not a database at all" * 100)
    cases = {
        "unknown table": (snapshot(root, "no-tracks", "DROP TABLE tracks"),
                          "has no table 'tracks'"),
        "key type": (snapshot(root, "int-keys", "ALTER TABLE users RENAME TO old",
                              "CREATE TABLE users (user_id INTEGER PRIMARY KEY, age INTEGER, "
                              "country TEXT, account_type TEXT, signup_days INTEGER)",
                              "DROP TABLE old"),
                     "key 'user_id' is INT in sqlite@"),
        "missing column": (snapshot(root, "no-age", "ALTER TABLE users DROP COLUMN age"),
                           "table 'users' has no column(s) age"),
        "unreadable": (str(garbage), "is not a SQLite database"),
        "a value of another type": (snapshot(root, "text-age",
                                             "UPDATE users SET age='x' WHERE rowid<5"),
                                    "column 'age' is INT in sqlite@"),
    }
    alone = tandem("shadow", "replay", "--logs", str(root / "logs"), "--baseline",
                   str(root / "a"), "--candidate", str(root / "a"), "--out", str(tmp_path / "o"),
                   "--gateway-config", setup["config"])
    assert alone.returncode == 2 and alone.stderr.strip().splitlines() == [
        "tandem: error: --gateway-config is for a replay with --candidate-features (its joins "
        "re-decorate the logged requests); give both, or neither"], alone.stderr
    for name, (source, message) in cases.items():
        done = tandem("shadow", "replay", "--logs", str(root / "logs"), "--baseline",
                      str(root / "a"), "--candidate", str(root / "a"), "--out",
                      str(tmp_path / "out"), "--gateway-config", setup["config"],
                      "--candidate-features", source)
        lines = done.stderr.strip().splitlines()
        assert done.returncode == 2, (name, done.stderr)
        assert len(lines) == 1 and lines[0].startswith("tandem: error: ") and message in \
            lines[0], (name, lines)


@pytest.mark.pipeline  # LocalDagRunner
def test_source_validator_blesses_or_rejects_a_snapshot_and_compiles_for_kubeflow(setup,
                                                                                  tmp_path):
    """The promotion pipeline with SourceValidator: a benign snapshot (a few new users) is
    blessed, one with age in months is not and names the column; the same DAG compiles for
    Kubeflow."""
    import ml_metadata as mlmd
    from tfx import v1 as tfx

    root = setup["root"]
    benign = snapshot(root, "new-users", "INSERT INTO users VALUES ('u900001', 30, 'US', "
                      "'free', 3)", "INSERT INTO users VALUES ('u900002', 41, 'DE', 'premium', 9)")
    common = ["shadow", "validate", "--logs", str(root / "logs"), "--baseline", str(root / "a"),
              "--candidate", str(root / "a"), "--gateway-config", setup["config"]]
    passed = tandem(*common, "--candidate-features", benign, "--out", str(tmp_path / "p"))
    assert passed.returncode == 0, passed.stdout + passed.stderr
    assert "blessed=1" in passed.stdout
    failed = tandem(*common, "--candidate-features", setup["months"], "--out",
                    str(tmp_path / "f"))
    assert failed.returncode == 1, failed.stdout + failed.stderr
    assert "blessed=0; blamed: age" in failed.stdout
    store = mlmd.MetadataStore(tfx.orchestration.metadata.sqlite_metadata_connection_config(
        str(tmp_path / "f" / "metadata.sqlite")))
    [blessing] = store.get_artifacts_by_type("tandem.FeatureSourceBlessing")
    assert blessing.custom_properties["blessed"].int_value == 0
    assert blessing.custom_properties["blamed"].string_value == "age"
    assert blessing.custom_properties["snapshot"].string_value.startswith("sqlite@")
    assert "SOURCE_NOT_BLESSED" in os.listdir(blessing.uri)

    out = tmp_path / "promotion.json"
    compiled = tandem("compile", "promotion", "--kubeflow", str(out), "--baseline",
                      "gs://bucket/models/listening/1", "--candidate",
                      "gs://bucket/models/listening/1", "--logs", "gs://bucket/logs/2026-11-28",
                      "--pipeline-root", "gs://bucket/tandem", "--candidate-features",
                      "redis://features:6379?prefix=users-2026-11-29",
                      "--gateway-config", "/etc/tandem/gateway.yaml")
    assert compiled.returncode == 0, compiled.stderr
    spec = out.read_text()
    tasks = set(json.loads(spec)["pipelineSpec"]["root"]["dag"]["tasks"])
    assert tasks == {"SourceValidator", "request_logs", "baseline_model", "candidate_model"}
    assert "tandem.components.source_validator.executor.Executor" in spec
    assert "users-2026-11-29" in spec
