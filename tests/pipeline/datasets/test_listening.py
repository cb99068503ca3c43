"""Tests for the synthetic listening-session generator."""

import csv
import hashlib
import json
import sqlite3

import numpy as np
import pytest

from tandem.pipeline.datasets import listening


def _auc(y: np.ndarray, score: np.ndarray) -> float:
    from scipy.stats import rankdata

    ranks = rankdata(score)  # ties share their average rank
    pos = y.sum()
    neg = len(y) - pos
    return float((ranks[y == 1].sum() - pos * (pos + 1) / 2) / (pos * neg))


def _columns(rows: int, seed: int = 0, drift: frozenset = frozenset()) -> dict:
    chunks = list(listening.generate_chunks(rows, seed, drift))
    cols = {k: np.concatenate([c.columns[k] for c in chunks]) for k in chunks[0].columns}
    cols["_probability"] = np.concatenate([c.probability for c in chunks])
    for name in ("device", "popularity"):
        present = [c.present.get(name) for c in chunks]
        if all(p is not None for p in present):
            cols[f"_{name}_present"] = np.concatenate(present)
    return cols


def _digest(path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_same_seed_gives_identical_files_and_other_seed_differs(tmp_path):
    a = listening.generate(str(tmp_path / "a"), 2500, seed=3, formats=("tfrecord", "csv"))
    b = listening.generate(str(tmp_path / "b"), 2500, seed=3, formats=("tfrecord", "csv"))
    listening.generate(str(tmp_path / "c"), 2500, seed=4, formats=("csv",))
    assert a["files"] == b["files"]
    for name in a["files"]:
        assert _digest(tmp_path / "a" / "span-1" / name) == _digest(tmp_path / "b" / "span-1" / name)
    csv_name = "data-00000-of-00001.csv"
    assert _digest(tmp_path / "a" / "span-1" / csv_name) != _digest(tmp_path / "c" / "span-1" / csv_name)


def test_label_has_learnable_signal_that_a_constant_model_lacks():
    cols = _columns(60_000, seed=11)
    y = cols[listening.LABEL]
    assert 0.35 < y.mean() < 0.55
    bayes = _auc(y, cols["_probability"])
    assert 0.75 <= bayes <= 0.85
    # A reasonable model: logistic regression on one-hot features plus the
    # age-group-by-genre crosses, fit on 40k rows, scored on 20k.
    parts = []
    for name in ("context", "device", "account_type", "genre", "country"):
        values = cols[name]
        parts += [(values == v).astype(float) for v in np.unique(values)]
    age, genre = cols["age"], cols["genre"]
    for g in np.unique(genre):
        parts += [((age < 30) & (genre == g)).astype(float), ((age > 50) & (genre == g)).astype(float)]
    for name in ("popularity", "duration_s", "shuffle"):
        v = cols[name].astype(float)
        parts.append((v - v.mean()) / v.std())
    parts.append((cols["hour_of_day"] < 6).astype(float))
    x = np.column_stack(parts + [np.ones(len(y))])
    train, test = slice(0, 40_000), slice(40_000, None)
    w = np.zeros(x.shape[1])
    for _ in range(300):
        p = 1 / (1 + np.exp(-x[train] @ w))
        w -= 0.5 * x[train].T @ (p - y[train]) / len(p)
    model_auc = _auc(y[test], x[test] @ w)
    assert 0.72 <= model_auc <= bayes + 0.02
    assert _auc(y[test], np.zeros(len(y[test]))) == pytest.approx(0.5)


def test_profile_age_shift_moves_ages_inside_the_domain():
    base, shifted = _columns(20_000), _columns(20_000, drift=frozenset({"age_shift"}))
    assert shifted["age"].mean() - base["age"].mean() > 10
    assert shifted["age"].min() >= listening.AGE_MIN and shifted["age"].max() <= listening.AGE_MAX


def test_profile_new_country_adds_an_unknown_country():
    cols = _columns(20_000, drift=frozenset({"new_country"}))
    share = (cols["country"] == listening.NEW_COUNTRY).mean()
    assert 0.04 < share < 0.12
    assert listening.NEW_COUNTRY not in listening.COUNTRIES


def test_profile_new_device_adds_an_unknown_device():
    cols = _columns(20_000, drift=frozenset({"new_device"}))
    assert 0.07 < (cols["device"] == listening.NEW_DEVICE).mean() < 0.13
    assert listening.NEW_DEVICE not in listening.DEVICES


def test_profile_impossible_values_adds_negative_ages_and_zero_durations():
    cols = _columns(20_000, drift=frozenset({"impossible_values"}))
    assert 0.01 < (cols["age"] < 0).mean() < 0.06
    assert 0.005 < (cols["duration_s"] == 0).mean() < 0.08
    clean = _columns(20_000)
    assert (clean["age"] >= listening.AGE_MIN).all() and (clean["duration_s"] >= 60).all()


def test_profile_missing_features_drops_device_and_popularity():
    cols = _columns(20_000, drift=frozenset({"missing_features"}))
    assert 0.06 < 1 - cols["_device_present"].mean() < 0.14
    assert 0.03 < 1 - cols["_popularity_present"].mean() < 0.2


def test_profile_skip_rate_raises_the_skip_rate():
    base, drifted = _columns(20_000), _columns(20_000, drift=frozenset({"skip_rate"}))
    assert drifted[listening.LABEL].mean() - base[listening.LABEL].mean() > 0.12


def test_every_profile_is_documented_and_parsed():
    assert listening.parse_drift("new_country, skip_rate") == {"new_country", "skip_rate"}
    assert listening.parse_drift(None) == frozenset()
    with pytest.raises(listening.GeneratorError, match="unknown drift profile.*bogus"):
        listening.parse_drift("bogus")
    assert set(listening.DRIFT_PROFILES) == {
        "age_shift", "new_country", "new_device", "impossible_values", "missing_features",
        "night_owls", "skip_rate",
    }


def test_profile_night_owls_moves_requests_into_the_night_and_labels_follow():
    base, drifted = _columns(20_000), _columns(20_000, drift=frozenset({"night_owls"}))
    assert drifted["hour_of_day"].max() <= 5 and base["hour_of_day"].max() == 23
    # Skips follow the documented rule for those hours (-0.3 logit at night): fewer skips.
    assert base[listening.LABEL].mean() - drifted[listening.LABEL].mean() > 0.02


def test_examples_are_the_join_of_events_with_the_feature_sources(tmp_path):
    import tensorflow as tf
    from tensorflow.core.example import example_pb2

    manifest = listening.generate(str(tmp_path), 1200, seed=5)
    assert manifest["rows"] == 1200
    con = sqlite3.connect(tmp_path / "features.sqlite")
    users = {r[0]: r[1:] for r in con.execute("SELECT * FROM users")}
    tracks = {r[0]: r[1:] for r in con.execute("SELECT * FROM tracks")}
    path = tmp_path / "span-1" / manifest["files"][0]
    n = 0
    for record in tf.data.TFRecordDataset(str(path), compression_type="GZIP"):
        f = example_pb2.Example.FromString(record.numpy()).features.feature
        user = users[f["user_id"].bytes_list.value[0].decode()]
        track = tracks[f["track_id"].bytes_list.value[0].decode()]
        assert f["age"].int64_list.value[0] == user[0]
        assert f["country"].bytes_list.value[0].decode() == user[1]
        assert f["genre"].bytes_list.value[0].decode() == track[0]
        assert f["duration_s"].float_list.value[0] == pytest.approx(track[1], rel=1e-6)
        assert f[listening.LABEL].int64_list.value[0] in (0, 1)
        assert len(f) == len(listening.FEATURE_ORDER)
        n += 1
    assert n == 1200
    saved = json.loads((tmp_path / "span-1" / "manifest.json").read_text())
    assert saved["rows"] == 1200 and saved["seed"] == 5


def test_csv_output_leaves_missing_cells_empty(tmp_path):
    listening.generate(str(tmp_path), 800, drift=frozenset({"missing_features"}), formats=("csv",))
    with open(tmp_path / "span-1" / "data-00000-of-00001.csv") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == 800
    assert list(rows[0]) == listening.FEATURE_ORDER
    assert any(r["device"] == "" for r in rows)
    assert all(r["country"] != "" for r in rows)


def test_large_outputs_are_sharded_and_spans_do_not_collide(tmp_path, monkeypatch):
    monkeypatch.setattr(listening, "ROWS_PER_SHARD", 1000)
    one = listening.generate(str(tmp_path), 2500, span=1, formats=("csv",))
    two = listening.generate(str(tmp_path), 2500, span=2, formats=("csv",))
    assert one["files"] == [f"data-0000{i}-of-00003.csv" for i in range(3)]
    ids = set()
    for span, manifest in ((1, one), (2, two)):
        for name in manifest["files"]:
            with open(tmp_path / f"span-{span}" / name) as f:
                ids |= {r["request_id"] for r in csv.DictReader(f)}
    assert len(ids) == 5000


def test_bad_arguments_are_rejected(tmp_path):
    with pytest.raises(listening.GeneratorError, match="--rows"):
        listening.generate(str(tmp_path), 0)
    with pytest.raises(listening.GeneratorError, match="format"):
        listening.generate(str(tmp_path), 10, formats=("parquet",))


def test_a_drift_profile_changes_only_what_it_documents():
    """Same seed, with and without a profile: the users' and tracks' other attributes are
    identical, so monitoring a profile names only its own features."""
    import numpy as np

    rng = lambda k: np.random.default_rng([5, k])  # noqa: E731
    base_users, base_tracks = listening.make_users(500, rng(1), frozenset()), \
        listening.make_tracks(500, rng(2), frozenset())
    for profile in listening.DRIFT_PROFILES:
        users = listening.make_users(500, rng(1), frozenset([profile]))
        tracks = listening.make_tracks(500, rng(2), frozenset([profile]))
        for name in ("account_type", "signup_days", "skip_tendency"):
            assert np.array_equal(getattr(users, name), getattr(base_users, name)), profile
        for name in ("genre", "popularity", "release_year"):
            assert np.array_equal(getattr(tracks, name), getattr(base_tracks, name)), profile
        if profile != "age_shift" and profile != "impossible_values":
            assert np.array_equal(users.age, base_users.age), profile


@pytest.mark.slow
def test_requests_for_an_existing_feature_source_come_from_its_users_and_tracks(tmp_path):
    """A small request span drawn for a larger span's tables (source_rows): its labels follow
    the very attributes the gateway will join from those tables. Without source_rows the
    tables are sized for the small span, and the users' attributes differ."""
    import tensorflow as tf
    from tensorflow.core.example import example_pb2

    big = listening.generate(str(tmp_path / "big"), 12000, seed=0)
    small = listening.generate(str(tmp_path / "small"), 900, seed=0, span=2,
                               source_rows=12000)
    own = listening.generate(str(tmp_path / "own"), 900, seed=0, span=2)
    assert small["feature_sources_version"] == big["feature_sources_version"]
    assert own["feature_sources_version"] != big["feature_sources_version"]
    decorated = {}
    for name in ("big", "small"):
        files = sorted((tmp_path / name / f"span-{1 if name == 'big' else 2}").glob("*.gz"))
        for record in tf.data.TFRecordDataset([str(f) for f in files], compression_type="GZIP"):
            f = example_pb2.Example.FromString(record.numpy()).features.feature
            user = f["user_id"].bytes_list.value[0]
            attrs = (f["account_type"].bytes_list.value[0], f["signup_days"].int64_list.value[0])
            decorated.setdefault(user, set()).add(attrs)
    assert all(len(a) == 1 for a in decorated.values())  # one user, one set of attributes
