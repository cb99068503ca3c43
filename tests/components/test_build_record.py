"""Tests for the model build record: fingerprints, lookup and the human diff."""

import json

import pytest

from tandem.components import build_record as br


def _record(**changes):
    record = {
        "model_name": "m", "created": "t0", "problem_type": "binary_classification",
        "schema": {"fingerprint": "s1"},
        "transform": {"fingerprint": "t1", "features": {
            "country": {"kind": "categorical", "frequency_threshold": 5, "dtype": "BYTES"},
            "age": {"kind": "numeric", "dtype": "INT"},
        }},
        "vocabularies": {"country": {"size": 41, "sha256": "a"}, "genre": {"size": 12, "sha256": "g"}},
        "data": {"span": 1, "train_examples": 10}, "eval_metrics": {"auc": 0.8},
    }
    for path, value in changes.items():
        node = record
        *parents, leaf = path.split(".")
        for p in parents:
            node = node[p]
        node[leaf] = value
    return record


def test_diff_names_vocabulary_option_and_data_changes():
    a = _record()
    b = _record(**{
        "vocabularies.country": {"size": 42, "sha256": "b"},
        "transform.features.age": {"kind": "bucketize", "num_buckets": 10, "dtype": "INT"},
        "transform.fingerprint": "t2", "data.span": 2, "created": "t1",
    })
    lines = br.diff_records(a, b)
    assert "vocabulary `country` changed: 41 → 42 terms" in lines
    assert "preprocessing of `age` changed: kind=numeric → kind=bucketize, num_buckets=10" in lines
    assert "transform.fingerprint: t1 → t2" in lines
    assert "data.span: 1 → 2" in lines
    assert not any("created" in line or "genre" in line for line in lines)
    assert br.diff_records(a, _record()) == []


def test_same_size_vocabulary_with_other_terms_is_reported():
    b = _record(**{"vocabularies.genre": {"size": 12, "sha256": "other"}})
    assert br.diff_records(_record(), b) == [
        "vocabulary `genre` changed: same size (12), different terms"
    ]


def test_fingerprints_and_vocabulary_entries(tmp_path):
    assets = tmp_path / "assets"
    assets.mkdir()
    (assets / "country").write_text("US\nGB\n\n")
    entries = br.vocabulary_entries(str(assets))
    assert entries["country"]["size"] == 2
    before = br.directory_fingerprint(str(tmp_path))
    (assets / "country").write_text("US\nGB\nNG\n")
    assert br.directory_fingerprint(str(tmp_path)) != before
    assert br.vocabulary_entries(str(assets))["country"]["size"] == 3


def test_record_is_found_in_model_version_and_base_directories(tmp_path):
    for version in ("3", "12"):
        extra = tmp_path / "base" / version / "assets.extra"
        extra.mkdir(parents=True)
        (extra / br.RECORD_FILE).write_text(json.dumps({"v": int(version)}))
    assert br.load_record(str(tmp_path / "base"))["v"] == 12  # the highest version
    assert br.load_record(str(tmp_path / "base" / "3"))["v"] == 3
    with pytest.raises(br.RecordError, match="no build record"):
        br.load_record(str(tmp_path))
    (tmp_path / "base" / "3" / "assets.extra" / br.RECORD_FILE).write_text("{bad")
    with pytest.raises(br.RecordError, match="unreadable"):
        br.load_record(str(tmp_path / "base" / "3"))


def test_flatten_for_ml_metadata():
    flat = br.flatten(_record())
    assert flat["vocabularies.country.size"] == 41
    assert flat["eval_metrics.auc"] == 0.8
    assert br.flatten({"a": [1, 2]}) == {"a": "[1, 2]"}
