"""`tandem data generate` and `tandem data profiles` as a user runs them: the files each
`--format`, `--requests` and `--labels` writes, and one line with exit status 2 for bad input."""

import csv
import glob
import json
import math
import os

import pytest
import tensorflow as tf

from tandem.pipeline.datasets import listening
from tests.conftest import tandem


def _examples(pattern: str) -> list[tf.train.Example]:
    [path] = glob.glob(pattern)
    return [tf.train.Example.FromString(r) for r in
            tf.data.TFRecordDataset(path, compression_type="GZIP").as_numpy_iterator()]


def _ids(examples) -> list[str]:
    return [e.features.feature["request_id"].bytes_list.value[0].decode() for e in examples]


def test_data_profiles_lists_every_drift_profile_with_what_it_does():
    done = tandem("data", "profiles", timeout=120)
    assert done.returncode == 0 and done.stderr == ""
    listed = dict(line.split(None, 1) for line in done.stdout.splitlines())
    assert listed == dict(listening.DRIFT_PROFILES)


@pytest.mark.slow
def test_data_generate_writes_each_format(tmp_path):
    both = tandem("data", "generate", "--rows", "300", "--out", str(tmp_path / "both"),
                  "--seed", "3", "--span", "2", "--format", "both", timeout=300)
    assert both.returncode == 0, both.stderr
    span = tmp_path / "both" / "span-2"
    assert "wrote 300 rows (skip rate " in both.stdout
    assert f"to {span} and feature sources to {tmp_path / 'both' / 'features.sqlite'}" \
        in both.stdout
    examples = _examples(str(span / "*.tfrecord.gz"))
    with open(glob.glob(str(span / "*.csv"))[0]) as f:
        rows = list(csv.DictReader(f))
    # The same 300 sessions in both formats, decorated and labelled.
    assert len(examples) == len(rows) == 300
    assert _ids(examples) == [r["request_id"] for r in rows]
    assert [e.features.feature["age"].int64_list.value[0] for e in examples] == \
        [int(r["age"]) for r in rows]
    assert [e.features.feature[listening.LABEL].int64_list.value[0] for e in examples] == \
        [int(r[listening.LABEL]) for r in rows]
    manifest = json.loads((span / "manifest.json").read_text())
    assert (manifest["rows"], manifest["seed"], manifest["span"]) == (300, 3, 2)

    only_csv = tandem("data", "generate", "--rows", "50", "--out", str(tmp_path / "csv"),
                      "--format", "csv", timeout=300)
    assert only_csv.returncode == 0, only_csv.stderr
    assert [os.path.basename(p) for p in glob.glob(str(tmp_path / "csv" / "span-1" / "data-*"))] \
        == ["data-00000-of-00001.csv"]


@pytest.mark.slow
def test_data_generate_requests_and_their_late_labels(tmp_path):
    out = tmp_path / "req"
    done = tandem("data", "generate", "--rows", "400", "--out", str(out), "--seed", "5",
                  "--requests", "--label-format", "csv", "--label-delay", "30",
                  "--label-loss", "0.5", "--rate", "4", timeout=300)
    assert done.returncode == 0, done.stderr
    labels_path = out / "span-1" / "labels.csv"
    with open(labels_path) as f:
        labels = list(csv.DictReader(f))
    assert (f"wrote {len(labels):,} labels to {labels_path} (mean delay 30s, 50% lost)"
            in done.stdout)
    assert "wrote 400 requests (undecorated, no label)" in done.stdout
    requests = _examples(str(out / "span-1" / "*.tfrecord.gz"))
    assert len(requests) == 400
    assert all(set(e.features.feature) <= set(listening.REQUEST_FEATURES) for e in requests)
    # Half are lost: 400 draws at p = 0.5, within four standard deviations (10 each).
    assert abs(len(labels) - 200) <= 4 * math.sqrt(400 * 0.5 * 0.5)
    # Request i is sent at start + i / 4 s; its label comes an exponential 30 s (mean) later.
    sent = {rid: i / 4 for i, rid in enumerate(_ids(requests))}
    start = min(float(r["timestamp"]) - sent[r["request_id"]] for r in labels)
    delays = [float(r["timestamp"]) - sent[r["request_id"]] - start for r in labels]
    mean = sum(delays) / len(delays)
    assert 30 - 4 * 30 / math.sqrt(len(delays)) < mean < 30 + 4 * 30 / math.sqrt(len(delays))

    tfrecord = tandem("data", "generate", "--rows", "100", "--out", str(tmp_path / "tfr"),
                      "--seed", "5", "--requests", "--label-format", "tfrecord", timeout=300)
    assert tfrecord.returncode == 0, tfrecord.stderr
    from tandem.schemas.labels import read_labels

    read = read_labels(str(tmp_path / "tfr" / "span-1" / "labels.tfrecord.gz"))
    assert len(read) == 100  # no loss by default


def test_data_generate_bad_input_is_one_line_and_exit_2(tmp_path):
    cases = [
        (["--rows", "0"], "--rows must be a positive integer, got 0"),
        (["--rows", "10", "--label-loss", "1.5", "--requests", "--label-format", "csv"],
         "--label-loss must be in [0, 1), got 1.5"),
        (["--rows", "10", "--requests", "--label-format", "csv", "--rate", "0"],
         "--label-delay must be >= 0 and --rate > 0"),
        (["--rows", "10", "--requests", "--format", "csv"],
         "--requests writes tf.Examples: use --format tfrecord"),
        (["--rows", "10", "--drift", "age_shift,moon_phase"], "moon_phase"),
        (["--rows", "10", "--format", "parquet"], "invalid choice: 'parquet'"),
        (["--rows", "ten"], "invalid int value: 'ten'"),
    ]
    for args, message in cases:
        done = tandem("data", "generate", "--out", str(tmp_path / "bad"), *args, timeout=120)
        assert done.returncode == 2, (args, done.stdout, done.stderr)
        assert message in done.stderr and "Traceback" not in done.stderr, (args, done.stderr)
    assert not os.path.exists(tmp_path / "bad" / "span-1" / "manifest.json")
