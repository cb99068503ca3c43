"""The loop's data on a config of your own (pipeline/loop_data.py): the held-out split, the
requests without their label, the labels that arrive, the drift recipe, and the bad configs
that stop `tandem loop --config` in one line."""

import csv
import glob
import os

import numpy as np
import pytest
import tensorflow as tf
import yaml

from tandem.pipeline.config import load_config
from tandem.pipeline.loop_data import LoopDataError, check_recipe, prepare, shuffled_labels, values
from tandem.schemas import load_schema
from tests.conftest import tandem

SCHEMA = """
feature { name: "size" type: FLOAT }
feature { name: "count" type: INT }
feature { name: "color" type: BYTES }
feature { name: "kind" type: BYTES not_in_environment: "SERVING" }
default_environment: "TRAINING"
default_environment: "SERVING"
"""


def _user(tmp_path, rows=400, **loop):
    """A user's directory: a CSV, a schema and a config (with a `loop` section)."""
    rng = np.random.default_rng(3)
    data = tmp_path / "data"
    data.mkdir()
    with open(data / "rows.csv", "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["size", "count", "color", "kind"])
        for i in range(rows):
            size = rng.normal(10, 2)
            w.writerow([f"{size:.3f}", int(rng.integers(0, 5)) if i % 7 else "",
                        ["red", "blue", "green"][i % 3] if i % 3 != 2 or i % 2 else "red",
                        "big" if size > 10 else "small"])
    (tmp_path / "schema.pbtxt").write_text(SCHEMA)
    raw = {"name": "shapes", "data": {"location": str(data)}, "label": "kind",
           "problem_type": "multiclass_classification", "schema": str(tmp_path / "schema.pbtxt"),
           "output_dir": str(tmp_path / "out")}
    if loop:
        raw["loop"] = loop
    (tmp_path / "config.yaml").write_text(yaml.safe_dump(raw))
    return load_config(str(tmp_path / "config.yaml"))


def _read(pattern):
    out = []
    for path in sorted(glob.glob(pattern)):
        for r in tf.data.TFRecordDataset(path, compression_type="GZIP"):
            out.append(tf.train.Example.FromString(r.numpy()))
    return out


def _labels(path):
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def test_rows_are_split_once_and_requests_carry_no_label(tmp_path):
    config = _user(tmp_path)
    work = tmp_path / "work"
    held = prepare(config, str(work), None, start_time=1000.0)
    train = _read(str(work / "data" / "span-1" / "*.gz"))
    clean, drift, mirror = (_read(p) for p in (held.clean, held.drift, held.mirror))
    assert held.counts == {"training": len(train), "clean": len(clean), "drift": len(drift),
                           "mirror": len(mirror)}
    assert len(train) == 160 and (len(clean), len(drift), len(mirror)) == (144, 48, 48)
    assert len(clean) == 3 * len(drift)  # the monitor's windows fall on the boundary
    ids = [values(e, "request_id")[0] for e in train + clean + drift + mirror]
    assert len(set(ids)) == 400  # every row once, each with its own id
    assert all(values(e, "kind") for e in train)
    assert not any("kind" in e.features.feature for e in clean + drift + mirror)
    # Typed by the schema; an empty cell is the feature with no value, as CsvExampleGen has it.
    assert all(e.features.feature["count"].WhichOneof("kind") == "int64_list" for e in train)
    assert any(not values(e, "count") for e in train)
    # Labels: the clean requests' arrive before retraining; the mirror's before the replay,
    # which judges quality on them alone (v2 trains on the clean ones); the drifted requests'
    # never (their label under the changed feature is unknown).
    early, late = _labels(held.labels), _labels(held.mirror_labels)
    assert [r["request_id"] for r in early] == [values(e, "request_id")[0].decode()
                                                for e in clean]
    assert [r["request_id"] for r in late] == [values(e, "request_id")[0].decode()
                                               for e in mirror]
    drifted = {values(e, "request_id")[0].decode() for e in drift}
    assert not drifted & {r["request_id"] for r in late}
    assert {r["label"] for r in late} == {"big", "small"}
    assert all(float(r["timestamp"]) == 1000.0 + config.loop.label_delay_s for r in late)
    # The loop's schema declares the id an identifier; v1 trains on span 1 of that copy.
    schema = load_schema(held.schema)
    (rid,) = (f for f in schema.feature if f.name == "request_id")
    assert "identifier" in rid.annotation.tag
    v1 = load_config(str(tmp_path / "config.yaml"), held.overrides)
    assert v1.features["request_id"].kind == "skip" and v1.data.format == "tfrecord"


def test_the_split_is_seeded(tmp_path):
    config = _user(tmp_path)
    a = prepare(config, str(tmp_path / "a"), None, 0.0)
    b = prepare(config, str(tmp_path / "b"), None, 0.0)
    assert _read(a.clean) == _read(b.clean)  # proto equality: map order may differ
    assert _read(a.clean) != _read(a.mirror)


def test_a_numeric_shift_moves_only_the_drifted_requests(tmp_path):
    config = _user(tmp_path, drift={"feature": "size", "shift": 3.0})
    held = prepare(config, str(tmp_path / "w"), None, 0.0)
    train = _read(str(tmp_path / "w" / "data" / "span-1" / "*.gz"))
    std = np.std([values(e, "size")[0] for e in train])
    sizes = {p: np.mean([values(e, "size")[0] for e in _read(getattr(held, p))])
             for p in ("clean", "drift", "mirror")}
    assert sizes["drift"] - sizes["clean"] == pytest.approx(3 * std, abs=0.8 * std)
    assert abs(sizes["mirror"] - sizes["clean"]) < std
    assert held.drift_feature == "size" and "3 standard deviations" in held.drift_note


def test_a_categorical_swap_exchanges_two_values(tmp_path):
    config = _user(tmp_path, drift={"feature": "color", "swap": ["red", "green"]})
    held = prepare(config, str(tmp_path / "w"), None, 0.0)
    clean = [values(e, "color") for e in _read(held.clean)]
    drift = [values(e, "color") for e in _read(held.drift)]
    share = {c: sum(v == [c] for v in clean) / len(clean) for c in (b"red", b"green")}
    moved = {c: sum(v == [c] for v in drift) / len(drift) for c in (b"red", b"green")}
    assert share[b"red"] > share[b"green"] and moved[b"green"] > moved[b"red"]


@pytest.mark.parametrize("recipe, message", [
    ({"feature": "nope"}, "unknown feature 'nope'"),
    ({"feature": "kind"}, "'kind' is the label"),
    ({"feature": "color", "shift": 1.0}, "'color' is categorical"),
    ({"feature": "size", "swap": ["a", "b"]}, "'size' is numeric"),
])
def test_a_bad_recipe_is_named(tmp_path, recipe, message):
    config = _user(tmp_path, drift=recipe)
    with pytest.raises(LoopDataError, match=message):
        check_recipe(config, load_schema(config.schema))


def test_a_swap_of_a_value_the_data_lacks_is_named(tmp_path):
    config = _user(tmp_path, drift={"feature": "color", "swap": ["red", "purple"]})
    with pytest.raises(LoopDataError, match="no value 'purple'"):
        prepare(config, str(tmp_path / "w"), None, 0.0)


def test_too_few_rows_are_refused(tmp_path):
    config = _user(tmp_path, rows=60)
    with pytest.raises(LoopDataError, match="too few"):
        prepare(config, str(tmp_path / "w"), None, 0.0)


def test_rows_caps_the_rows_and_the_schema_floor_follows_the_loops_spans(tmp_path):
    """`tandem loop --rows N` takes N of the config's rows (seeded); a schema proposed on all
    of them asks each dataset for 10% of all rows, more than the loop's spans of N hold, so
    the loop's copy of the schema lowers that floor to its smallest span, and says so."""
    from google.protobuf import text_format

    from tandem.schemas import load_schema

    config = _user(tmp_path, rows=2000)
    schema = load_schema(config.schema)
    schema.dataset_constraints.min_examples_count = 200  # 10% of 2,000
    with open(config.schema, "w") as f:
        f.write(text_format.MessageToString(schema))
    full = prepare(config, str(tmp_path / "all"), None, 0.0)
    assert sum(full.counts.values()) == 2000 and full.schema_note == ""
    assert load_schema(full.schema).dataset_constraints.min_examples_count == 200
    capped = prepare(config, str(tmp_path / "few"), 400, 0.0)
    assert sum(capped.counts.values()) == 400 and capped.counts["training"] == 160
    floor = load_schema(capped.schema).dataset_constraints.min_examples_count
    assert capped.schema_note.startswith("the schema's min_examples_count 200 is above the "
                                         f"loop's smallest split (about {floor} examples of "
                                         "400 rows)")
    # What ExampleValidator will judge: each split of v1's 160 training rows and of the log,
    # split as the pipeline splits them (2:1 by hash), must clear the copy's floor, which TFDV
    # checks per split. The smaller split here is the eval split of v1's part.
    import tensorflow_data_validation as tfdv
    from tensorflow_metadata.proto.v0 import statistics_pb2

    def anomalies(n):
        stats = statistics_pb2.DatasetFeatureStatisticsList()
        stats.datasets.add(num_examples=n)
        return set(tfdv.validate_statistics(stats, load_schema(capped.schema))
                   .dataset_anomaly_info.reason and ["low"] or [])

    assert anomalies(int(160 * 0.8 / 3)) == set()  # an eval split 20% short of a third
    assert anomalies(floor - 1) == {"low"}  # the floor is still a floor


def test_shuffled_labels_keep_ids_and_the_label_multiset(tmp_path):
    path = tmp_path / "labels.csv"
    rows = [["request_id", "label", "timestamp"]] + [[f"r{i}", str(i % 4), "5"]
                                                    for i in range(200)]
    with open(path, "w", newline="") as f:
        csv.writer(f).writerows(rows)
    out = _labels(shuffled_labels(str(path), str(tmp_path / "s.csv"), seed=0))
    assert [r["request_id"] for r in out] == [r[0] for r in rows[1:]]
    assert sorted(r["label"] for r in out) == sorted(r[1] for r in rows[1:])
    moved = sum(r["label"] != o[1] for r, o in zip(out, rows[1:], strict=True))
    assert moved > 100  # most requests now carry another's label


def test_bad_loop_configs_exit_2_in_one_line(tmp_path):
    for args, message in [
        (("--set", "loop.drift.feature=nope"), "unknown feature 'nope'"),
        (("--set", "loop.holdout=0.99"), "loop.holdout"),
        (("--set", "loop.drift.swap=[a]"), "two values"),
        (("--scenario", "feature-source"), "needs the listening loop"),
    ]:
        done = tandem("loop", "--config", "taxi", "--out", str(tmp_path / "w"), *args,
                      timeout=120)
        assert done.returncode == 2, (args, done.stdout, done.stderr)
        lines = done.stderr.strip().splitlines()
        assert len(lines) == 1 and message in lines[0], (args, done.stderr)
        assert not os.path.exists(tmp_path / "w")  # refused before any work
    # The listening loop takes overrides too (e.g. beam.extra_args for another runner), and
    # refuses a bad one the same way.
    listening = tandem("loop", "--out", str(tmp_path / "w"), "--set", "beam.runner=flink",
                       timeout=120)
    assert listening.returncode == 2, (listening.stdout, listening.stderr)
    lines = listening.stderr.strip().splitlines()
    assert len(lines) == 1 and "beam.runner" in lines[0], listening.stderr
    assert not os.path.exists(tmp_path / "w")


def test_the_default_swap_exchanges_the_most_and_the_least_frequent_value(tmp_path):
    """red is the most frequent colour of _user's rows and green the least: their swap moves
    the distribution the monitor compares, as swapping two equally frequent values would not."""
    config = _user(tmp_path, drift={"feature": "color"})
    held = prepare(config, str(tmp_path / "work"), None, 0.0)
    assert held.drift_note == "color: 'red' and 'green' swapped"
    clean = [values(e, "color") for e in _read(held.clean)]
    drift = [values(e, "color") for e in _read(held.drift)]
    share = {c: sum(v == [c] for v in clean) / len(clean) for c in (b"red", b"blue", b"green")}
    moved = {c: sum(v == [c] for v in drift) / len(drift) for c in (b"red", b"blue", b"green")}
    assert share[b"red"] > share[b"blue"] > share[b"green"]
    assert moved[b"green"] > moved[b"blue"] > moved[b"red"]  # blue stays; the ends trade
