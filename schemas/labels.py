"""Late labels: `request_id,label[,timestamp]` records, keyed by the logged example id.

Labels arrive after the request, from the product (a skip, a purchase, a fare): this is the
contract between that stream and tandem. A labels file is CSV (a header row is optional;
`timestamp` is seconds since the epoch, optional) or a TFRecord of tf.Examples with the
features `request_id` (bytes), `label` and optionally `timestamp` (int64 seconds; a float
feature is float32, which keeps only about two minutes of resolution).

What a label may be is the schema's to say, not the file's: the label feature's type in the
pipeline's schema is its **kind** (`label_kind`), and every value is read as that kind or
refused with the file and line (or record) at fault:

| kind  | CSV                                   | TFRecord `label`                   |
|-------|---------------------------------------|------------------------------------|
| INT   | an integer (`1.0` is 1; `2.5` is refused) | int64, or a float with no fraction |
| FLOAT | a finite number                       | int64 or float                     |
| BYTES | the text, stripped, not empty         | bytes (UTF-8), or int64 as its digits |

A class name is text whatever it looks like: "2" is the class "2" of a BYTES label, as it is
in a CSV, so an int64 label in a TFRecord reads as its digits. One bad label stops the read:
a labels file that lies about one label cannot be trusted for the rest. Files written before
kinds existed (numbers) read as before with the default kind, FLOAT.

Duplicates: when one request id has several labels, the one with the latest timestamp wins
(on equal or missing timestamps, the later record in the file), and duplicates are counted.
"""

from __future__ import annotations

import csv
import dataclasses
import glob as globlib
import io
import math

from tandem.schemas.files import tfrecord_compression

REQUEST_ID, LABEL, TIMESTAMP = "request_id", "label", "timestamp"
INT, FLOAT, BYTES = "INT", "FLOAT", "BYTES"  # a label's kind: its feature type in the schema
KINDS = (INT, FLOAT, BYTES)
_INT64 = (-(2**63), 2**63 - 1)
_NAMES = {INT: "an integer", FLOAT: "a number", BYTES: "text"}


class LabelsError(ValueError):
    """A labels file tandem cannot read: the message names the file and the line."""


@dataclasses.dataclass
class Label:
    value: int | float | str  # int for INT labels, float for FLOAT, str for BYTES
    timestamp: float | None = None


@dataclasses.dataclass
class LabelStats:
    records: int = 0
    duplicates: int = 0


def label_kind(schema, label: str) -> str:
    """The kind of `label`: its feature type (INT, FLOAT or BYTES) in `schema`."""
    from tensorflow_metadata.proto.v0 import schema_pb2

    for feature in schema.feature:
        if feature.name == label:
            kind = schema_pb2.FeatureType.Name(feature.type)
            if kind not in KINDS:
                raise LabelsError(f"label '{label}' has type {kind} in the schema; a label "
                                  f"is one of {', '.join(KINDS)}")
            return kind
    raise LabelsError(f"label '{label}' is not a feature of the schema, so its kind (INT, "
                      "FLOAT or BYTES) is unknown")


def check_kind(kind: str) -> str:
    if kind not in KINDS:
        raise ValueError(f"label kind must be one of {', '.join(KINDS)}, got {kind!r}")
    return kind


def _number(text: str, where: str, what: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise LabelsError(f"{where}: {what} '{text}' is not a number") from None
    if not math.isfinite(value):
        raise LabelsError(f"{where}: {what} '{text.strip()}' is not a finite number")
    return value


def _integer(value: float | int, shown: str, where: str) -> int:
    if isinstance(value, float) and not value.is_integer():
        raise LabelsError(f"{where}: label '{shown}' is not an integer, and the schema's "
                          "label is INT")
    value = int(value)
    if not _INT64[0] <= value <= _INT64[1]:
        raise LabelsError(f"{where}: label '{shown}' does not fit in an int64")
    return value


def parse_label(text: str, kind: str, where: str) -> int | float | str:
    """A label written as text (a CSV field), read as `kind`."""
    text = text.strip()
    if kind == BYTES:
        if not text:
            raise LabelsError(f"{where}: empty label")
        return text
    if kind == INT:
        try:
            return _integer(int(text), text, where)
        except ValueError:
            pass
        try:
            number = float(text)
        except ValueError:
            raise LabelsError(f"{where}: label '{text}' is not an integer, and the schema's "
                              "label is INT") from None
        if not math.isfinite(number):
            raise LabelsError(f"{where}: label '{text}' is not an integer, and the schema's "
                              "label is INT")
        return _integer(number, text, where)
    return _number(text, where, "label")


def _feature_label(feature, kind: str, where: str) -> int | float | str:
    """A TFRecord's `label` feature, read as `kind`."""
    which = feature.WhichOneof("kind") if feature is not None else None
    values = list(getattr(feature, which).value) if which else []
    if len(values) != 1:
        raise LabelsError(f"{where}: '{LABEL}' must hold exactly one value, holds "
                          f"{len(values)}")
    value = values[0]
    if which == "bytes_list":
        if kind != BYTES:
            raise LabelsError(f"{where}: label {value[:40]!r} is bytes, and the schema's "
                              f"label is {kind} ({_NAMES[kind]})")
        try:
            return parse_label(value.decode("utf-8"), kind, where)
        except UnicodeDecodeError:
            raise LabelsError(f"{where}: label {value[:40]!r} is not UTF-8 text") from None
    if kind == BYTES:
        if which == "float_list":
            raise LabelsError(f"{where}: label {value:g} is a float, and the schema's label "
                              "is BYTES (a class name)")
        return str(value)
    if kind == INT:
        return _integer(value, f"{value:g}" if which == "float_list" else str(value), where)
    if not math.isfinite(value):
        raise LabelsError(f"{where}: label {value} is not a finite number")
    return float(value)


def _keep(labels: dict[str, Label], stats: LabelStats, rid: str, label: Label) -> None:
    stats.records += 1
    old = labels.get(rid)
    if old is not None:
        stats.duplicates += 1
        if old.timestamp is not None and (label.timestamp is None
                                          or label.timestamp < old.timestamp):
            return
    labels[rid] = label


def _read_csv(path: str, text: str, kind: str, labels: dict[str, Label],
              stats: LabelStats) -> None:
    rows = csv.reader(io.StringIO(text))
    for line, row in enumerate(rows, start=1):
        if not row or not "".join(row).strip():
            continue
        if line == 1 and row[0].strip() == REQUEST_ID:
            if len(row) < 2 or row[1].strip() != LABEL:
                raise LabelsError(f"{path}:1: expected the header 'request_id,label"
                                  f"[,timestamp]', got '{','.join(row)}'")
            continue
        where = f"{path}:{line}"
        if len(row) not in (2, 3):
            raise LabelsError(f"{where}: expected 'request_id,label[,timestamp]', got "
                              f"{len(row)} field(s)")
        rid = row[0].strip()
        if not rid:
            raise LabelsError(f"{where}: empty request_id")
        ts = _number(row[2], where, "timestamp") if len(row) == 3 and row[2].strip() else None
        _keep(labels, stats, rid, Label(parse_label(row[1], kind, where), ts))


def _read_tfrecord(path: str, kind: str, labels: dict[str, Label], stats: LabelStats) -> None:
    import tensorflow as tf

    compression = tfrecord_compression(path)
    try:
        for n, raw in enumerate(tf.data.TFRecordDataset(path, compression_type=compression)
                                .as_numpy_iterator(), start=1):
            f = tf.train.Example.FromString(raw).features.feature
            where = f"{path}: record {n}"
            if REQUEST_ID not in f or not f[REQUEST_ID].bytes_list.value:
                raise LabelsError(f"{where}: no bytes feature '{REQUEST_ID}'")
            value = _feature_label(f[LABEL] if LABEL in f else None, kind, where)
            ts = f[TIMESTAMP] if TIMESTAMP in f else None
            stamp = list(ts.int64_list.value or ts.float_list.value) if ts is not None else []
            _keep(labels, stats, f[REQUEST_ID].bytes_list.value[0].decode(),
                  Label(value, float(stamp[0]) if stamp else None))
    except tf.errors.OpError as e:
        raise LabelsError(f"{path}: not a readable TFRecord file ({e.message})") from None


def read_labels(pattern: str, stats: LabelStats | None = None,
                kind: str = FLOAT) -> dict[str, Label]:
    """All labels in the files matching `pattern` (a path or glob), by request id, each read
    as `kind` (INT, FLOAT or BYTES: `label_kind` of the pipeline's schema)."""
    import tensorflow as tf

    check_kind(kind)
    stats = stats if stats is not None else LabelStats()
    files = sorted(tf.io.gfile.glob(pattern)) if "://" in pattern else \
        sorted(globlib.glob(pattern))
    if not files:
        raise LabelsError(f"no labels file matches {pattern}")
    labels: dict[str, Label] = {}
    for path in files:
        with tf.io.gfile.GFile(path, "rb") as f:
            head = f.read(1 << 16)
        if path.endswith((".tfrecord", ".tfrecord.gz", ".gz")) or b"\x00" in head[:4096]:
            _read_tfrecord(path, kind, labels, stats)
            continue
        with tf.io.gfile.GFile(path, "rb") as f:
            raw = f.read()
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError:
            raise LabelsError(f"{path}: not UTF-8 text (a labels CSV) nor a TFRecord") from None
        _read_csv(path, text, kind, labels, stats)
    return labels
