"""The late-labels contract: a label is read as the kind the schema gives it (INT, FLOAT or
BYTES), from CSV and TFRecord alike, and a label that does not fit is refused with the file
and line (or record) at fault. Files written before kinds existed read as they did."""

import pytest
import tensorflow as tf

from tandem.schemas import curated_schema_path, load_schema
from tandem.schemas.labels import (
    BYTES,
    FLOAT,
    INT,
    LabelsError,
    LabelStats,
    label_kind,
    read_labels,
)


def _csv(tmp_path, rows: list[str], name: str = "labels.csv") -> str:
    path = tmp_path / name
    path.write_text("request_id,label,timestamp\n" + "".join(f"{r}\n" for r in rows))
    return str(path)


def _tfrecord(tmp_path, labels: list, name: str = "labels.tfrecord.gz") -> str:
    """One record per label: an int, a float or bytes `label` feature, as given."""
    path = str(tmp_path / name)
    with tf.io.TFRecordWriter(path, options="GZIP") as w:
        for i, value in enumerate(labels):
            e = tf.train.Example()
            f = e.features.feature
            f["request_id"].bytes_list.value.append(f"r{i}".encode())
            if isinstance(value, bytes):
                f["label"].bytes_list.value.append(value)
            elif isinstance(value, float):
                f["label"].float_list.value.append(value)
            else:
                f["label"].int64_list.value.append(value)
            f["timestamp"].int64_list.value.append(1_800_000_000 + i)
            w.write(e.SerializeToString())
    return path


def _values(labels) -> dict:
    return {rid: label.value for rid, label in labels.items()}


def test_each_kind_reads_csv_and_tfrecord_alike(tmp_path):
    ints = _csv(tmp_path, ["r0,2,1800000000", "r1, 0 ,", "r2,1.0"], "ints.csv")
    assert _values(read_labels(ints, kind=INT)) == {"r0": 2, "r1": 0, "r2": 1}
    assert all(type(v) is int for v in _values(read_labels(ints, kind=INT)).values())
    as_tfrecord = _tfrecord(tmp_path, [2, 0, 1.0], "ints.tfrecord.gz")
    assert _values(read_labels(as_tfrecord, kind=INT)) == {"r0": 2, "r1": 0, "r2": 1}

    floats = _csv(tmp_path, ["r0,12.5,", "r1,-3", "r2,1e3"], "floats.csv")
    assert _values(read_labels(floats, kind=FLOAT)) == {"r0": 12.5, "r1": -3.0, "r2": 1000.0}
    assert _values(read_labels(_tfrecord(tmp_path, [12.5, -3, 1000.0], "f.tfrecord.gz"),
                               kind=FLOAT)) == {"r0": 12.5, "r1": -3.0, "r2": 1000.0}

    # A class name is text whatever it looks like; UTF-8 names survive both formats.
    names = _csv(tmp_path, ["r0,äpfel", "r1, kirsche ,", "r2,2"], "names.csv")
    expected = {"r0": "äpfel", "r1": "kirsche", "r2": "2"}
    assert _values(read_labels(names, kind=BYTES)) == expected
    assert _values(read_labels(_tfrecord(tmp_path, ["äpfel".encode(), b"kirsche", 2],
                                         "n.tfrecord.gz"), kind=BYTES)) == expected


@pytest.mark.parametrize("kind, value, message", [
    (INT, "cat", "label 'cat' is not an integer, and the schema's label is INT"),
    (INT, "2.5", "label '2.5' is not an integer"),
    (INT, "inf", "label 'inf' is not an integer"),
    (INT, "99999999999999999999", "label '99999999999999999999' does not fit in an int64"),
    (FLOAT, "cat", "label 'cat' is not a number"),
    (FLOAT, "nan", "label 'nan' is not a finite number"),
    (BYTES, " ", "empty label"),
])
def test_a_csv_label_that_does_not_fit_its_kind_names_file_and_line(tmp_path, kind, value,
                                                                     message):
    path = _csv(tmp_path, ["r0,1", f"r1,{value}", "r2,1"])
    with pytest.raises(LabelsError) as info:
        read_labels(path, kind=kind)
    assert str(info.value).startswith(f"{path}:3: {message}")  # the header is line 1


@pytest.mark.parametrize("kind, value, message", [
    (INT, b"cat", "label b'cat' is bytes, and the schema's label is INT"),
    (INT, 2.5, "label '2.5' is not an integer"),
    (FLOAT, b"1.5", "label b'1.5' is bytes, and the schema's label is FLOAT"),
    (BYTES, 0.5, "label 0.5 is a float, and the schema's label is BYTES"),
    (BYTES, b"\xff", "label b'\\xff' is not UTF-8 text"),
])
def test_a_tfrecord_label_that_does_not_fit_its_kind_names_file_and_record(tmp_path, kind,
                                                                           value, message):
    path = _tfrecord(tmp_path, [1 if kind != BYTES else b"a", value])
    with pytest.raises(LabelsError) as info:
        read_labels(path, kind=kind)
    assert str(info.value).startswith(f"{path}: record 2: {message}")


def test_files_written_before_kinds_read_as_before(tmp_path):
    """The generator's labels (int64 0/1 in TFRecord, digits in CSV) read with the default
    kind as the numbers they were, and as INT for the listening schema's label."""
    from tandem.pipeline.datasets import listening

    listening.generate(str(tmp_path / "csv"), 300, seed=2, requests=True, labels="csv",
                       start_time=1_800_000_000.0)
    listening.generate(str(tmp_path / "tfr"), 300, seed=2, requests=True, labels="tfrecord",
                       start_time=1_800_000_000.0)
    csv_path = str(tmp_path / "csv" / "span-1" / "labels.csv")
    tfr_path = str(tmp_path / "tfr" / "span-1" / "labels.tfrecord.gz")
    kind = label_kind(load_schema(curated_schema_path("listening")), "skipped")
    assert kind == INT
    stats = LabelStats()
    as_int = _values(read_labels(csv_path, stats, kind=kind))
    assert stats.records == len(as_int) > 200 and set(as_int.values()) == {0, 1}
    assert _values(read_labels(tfr_path, kind=kind)) == as_int
    assert _values(read_labels(csv_path)) == {k: float(v) for k, v in as_int.items()}


def test_the_kind_is_the_schemas_and_nothing_else(tmp_path):
    schema = load_schema(curated_schema_path("listening"))
    assert label_kind(schema, "country") == BYTES
    assert label_kind(schema, "duration_s") == FLOAT
    with pytest.raises(LabelsError, match="label 'fare' is not a feature of the schema"):
        label_kind(schema, "fare")
    with pytest.raises(ValueError, match="label kind must be one of INT, FLOAT, BYTES"):
        read_labels(_csv(tmp_path, ["r0,1"]), kind="int")
