"""Late labels: `request_id,label[,timestamp]` records, keyed by the logged example id.

Labels arrive after the request, from the product (a skip, a purchase, a fare): this is the
contract between that stream and tandem. A labels file is CSV (a header row is optional;
`timestamp` is seconds since the epoch, optional) or a TFRecord of tf.Examples with the
features `request_id` (bytes), `label` (int or float) and optionally `timestamp` (int64
seconds; a float feature is float32, which keeps only about two minutes of resolution).

Duplicates: when one request id has several labels, the one with the latest timestamp wins
(on equal or missing timestamps, the later record in the file), and duplicates are counted.
"""

from __future__ import annotations

import csv
import dataclasses
import glob as globlib
import io

REQUEST_ID, LABEL, TIMESTAMP = "request_id", "label", "timestamp"


class LabelsError(ValueError):
    """A labels file tandem cannot read: the message names the file and the line."""


@dataclasses.dataclass
class Label:
    value: float
    timestamp: float | None = None


@dataclasses.dataclass
class LabelStats:
    records: int = 0
    duplicates: int = 0


def _number(text: str, where: str, what: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise LabelsError(f"{where}: {what} '{text}' is not a number") from None
    if value != value:
        raise LabelsError(f"{where}: {what} is NaN")
    return value


def _keep(labels: dict[str, Label], stats: LabelStats, rid: str, label: Label) -> None:
    stats.records += 1
    old = labels.get(rid)
    if old is not None:
        stats.duplicates += 1
        if old.timestamp is not None and (label.timestamp is None
                                          or label.timestamp < old.timestamp):
            return
    labels[rid] = label


def _read_csv(path: str, text: str, labels: dict[str, Label], stats: LabelStats) -> None:
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
        _keep(labels, stats, rid, Label(_number(row[1], where, "label"), ts))


def _read_tfrecord(path: str, labels: dict[str, Label], stats: LabelStats) -> None:
    import tensorflow as tf

    compression = "GZIP" if path.endswith(".gz") else ""
    try:
        for n, raw in enumerate(tf.data.TFRecordDataset(path, compression_type=compression)
                                .as_numpy_iterator(), start=1):
            f = tf.train.Example.FromString(raw).features.feature
            where = f"{path}: record {n}"
            if REQUEST_ID not in f or not f[REQUEST_ID].bytes_list.value:
                raise LabelsError(f"{where}: no bytes feature '{REQUEST_ID}'")
            values = list(f[LABEL].int64_list.value or f[LABEL].float_list.value) \
                if LABEL in f else []
            if len(values) != 1:
                raise LabelsError(f"{where}: '{LABEL}' must hold exactly one number")
            ts = f[TIMESTAMP] if TIMESTAMP in f else None
            stamp = list(ts.int64_list.value or ts.float_list.value) if ts is not None else []
            _keep(labels, stats, f[REQUEST_ID].bytes_list.value[0].decode(),
                  Label(float(values[0]), float(stamp[0]) if stamp else None))
    except tf.errors.OpError as e:
        raise LabelsError(f"{path}: not a readable TFRecord file ({e.message})") from None


def read_labels(pattern: str, stats: LabelStats | None = None) -> dict[str, Label]:
    """All labels in the files matching `pattern` (a path or glob), by request id."""
    import tensorflow as tf

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
            _read_tfrecord(path, labels, stats)
            continue
        with tf.io.gfile.GFile(path, "rb") as f:
            raw = f.read()
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError:
            raise LabelsError(f"{path}: not UTF-8 text (a labels CSV) nor a TFRecord") from None
        _read_csv(path, text, labels, stats)
    return labels
