"""The label join: logged, decorated examples + late labels -> training examples.

Each training example is exactly what the model saw at serving time (the decorated example
as the gateway logged it) plus the label joined by the example's id: no second join with the
feature sources. The rules, counted in `JoinStats`:

- only the primary's records count (the shadow's answers are the candidate's business);
- requests the validator **rejected** are left out (the model never scored them);
- an id logged twice (a client's retry) keeps its **first** logged occurrence, by
  `tandem.schemas.request_log.log_place` (the shadow replay keeps the same one);
- an example with **no label** is left out; a label that arrived more than `label_delay_s`
  after the request is **late** and left out too, so a span does not change as stragglers
  arrive (a labels file's duplicates are resolved by schemas/labels.py: the latest wins);
- a label feature already present in a logged example (a client sent it) is dropped before
  the joined label is appended: **no label leaks into a feature** unless it is the label.

The label is written as its kind (schemas/labels.py: the schema's type of the label, INT,
FLOAT or BYTES), which the labels file was read as, so a training example's label has the
type the schema and Transform expect.
"""

from __future__ import annotations

import dataclasses
import hashlib

from tandem.schemas.labels import BYTES, INT, Label


@dataclasses.dataclass
class JoinStats:
    records: int = 0
    shadow_records: int = 0
    rejected: int = 0  # examples of requests the validator refused
    duplicates: int = 0
    unlabelled: int = 0
    late: int = 0
    label_in_request: int = 0
    joined: int = 0

    def add(self, other: JoinStats) -> None:
        for field in dataclasses.fields(self):
            setattr(self, field.name, getattr(self, field.name) + getattr(other, field.name))


def label_fragment(name: str, value: int | float | str, kind: str) -> bytes:
    """The label as a tf.Example of its own, an int64, float or bytes feature by its `kind`;
    appended to serialized example bytes, protobuf merges it in (the generator builds its
    training rows the same way)."""
    from tensorflow.core.example import example_pb2

    e = example_pb2.Example()
    feature = e.features.feature[name]
    if kind == INT:
        feature.int64_list.value.append(int(value))
    elif kind == BYTES:
        feature.bytes_list.value.append(value.encode() if isinstance(value, str) else value)
    else:
        feature.float_list.value.append(float(value))
    return e.SerializeToString()


def _without(example: bytes, name: str) -> tuple[bytes, bool]:
    from tensorflow.core.example import example_pb2

    if name.encode() not in example:  # cheap test first: most examples lack it
        return example, False
    parsed = example_pb2.Example.FromString(example)
    if name not in parsed.features.feature:
        return example, False
    del parsed.features.feature[name]
    return parsed.SerializeToString(), True


def first_places(records) -> dict[str, tuple]:
    """Each example id's first logged place among the records `join_records` would join: a
    first pass over the log, since files are not in time order across replicas."""
    from tandem.schemas.request_log import PRIMARY, log_place

    first: dict[str, tuple] = {}
    for record in records:
        if record.role != PRIMARY or record.verdict.get("rejected"):
            continue
        for i, rid in enumerate(record.example_ids[:len(record.examples())]):
            place = log_place(record, i)
            if rid not in first or place < first[rid]:
                first[rid] = place
    return first


def join_records(records, labels: dict[str, Label], label: str, kind: str,
                 label_delay_s: float, stats: JoinStats, first: dict[str, tuple]):
    """(example id, training example bytes, request time) for every joinable example of the
    PredictionLog `records`, the label written as `kind`; `first` (from `first_places`) says
    which occurrence of an id to keep."""
    from tandem.schemas.request_log import PRIMARY, log_place

    for record in records:
        if record.role != PRIMARY:
            stats.shadow_records += 1
            continue
        stats.records += 1
        examples = record.examples()
        if record.verdict.get("rejected"):
            stats.rejected += len(examples)
            continue
        for i, (rid, example) in enumerate(zip(record.example_ids, examples, strict=False)):
            if first.get(rid) != log_place(record, i):
                stats.duplicates += 1
                continue
            found = labels.get(rid)
            if found is None:
                stats.unlabelled += 1
                continue
            if found.timestamp is not None and \
                    found.timestamp - record.timestamp > label_delay_s:
                stats.late += 1
                continue
            example, had = _without(example, label)
            stats.label_in_request += int(had)
            stats.joined += 1
            yield rid, example + label_fragment(label, found.value, kind), record.timestamp


def split_of(example_id: str, train_buckets: int, eval_buckets: int) -> str:
    """train or eval, by a stable hash of the example id (the same id, the same split)."""
    bucket = int.from_bytes(hashlib.blake2b(example_id.encode(), digest_size=8).digest(),
                            "big") % (train_buckets + eval_buckets)
    return "train" if bucket < train_buckets else "eval"
