"""The loop's data on any pipeline config (`tandem loop --config NAME`): your own rows, split.

A seeded share of the config's rows (`loop.holdout`, 60% by default) is held out of v1's
training and becomes the loop's traffic, in time order:

    clean   (60% of the held out)  sent in step 3; labels arrive loop.label_delay_s later
    drifted (20%)                  sent in step 3 with the config's drift recipe applied; their
                                   labels never arrive (what the label would have been under
                                   the changed feature is unknown, so none is made up)
    mirror  (20%)                  sent in step 5, mirrored to the canary; labelled before the
                                   replay, which judges quality on these alone: neither
                                   model trained on them (v2 trained on the clean ones)

With the default holdout (60%), v1 trains on 40% of the rows and v2 on the 36% the clean
requests' labels make of the log: two models of about the same data size.

The training part is written as TFRecord tf.Examples (span 1), typed by the config's schema.
Every row gets an id, `request_id` (or the data's own, when it has that column), declared an
identifier in a copy of the schema, so late labels join to logged requests by it and no
stage judges it for drift. Requests carry every feature but the label.

One module past 400 lines because reading the config's rows, the drift recipe and the split
are one step of the loop, and none of them is used anywhere else.
"""

from __future__ import annotations

import csv
import dataclasses
import glob
import gzip
import io
import os
from typing import Any

import numpy as np

from tandem.schemas.exit_status import BadInputError
from tandem.schemas.files import gzip_by_magic, tfrecord_compression

ID = "request_id"
SHARES = (("clean", 0.6), ("drift", 0.2), ("mirror", 0.2))
REQUEST_BATCH = 4  # examples per request the loop sends in step 3


class LoopDataError(BadInputError):
    """The config's data or drift recipe cannot make a loop: the message names why (exit 2)."""


@dataclasses.dataclass
class HeldOut:
    """What step 1 prepared for the rest of the loop."""

    overrides: list[str]  # on top of the user's config: v1's data, schema and outputs
    schema: str
    clean: str  # globs of request files
    drift: str
    mirror: str
    labels: str  # the clean requests' labels (arrive before retraining)
    # The mirrored requests' labels (arrive before the replay): the replay judges quality on
    # these alone, rows neither model trained on; v2 trained on the clean requests, and its
    # quality on them would be measured on its own training rows.
    mirror_labels: str
    counts: dict[str, int]
    drift_feature: str
    drift_note: str
    label_std: float | None  # regression: the training part's label spread
    schema_note: str = ""  # what the loop's copy of the schema changed, and why


def _files(config) -> list[str]:
    pattern = config.data.pattern.replace("{SPAN}", "*")
    found = sorted(f for f in glob.glob(os.path.join(config.data.location, pattern))
                   if os.path.isfile(f))
    if not found:
        raise LoopDataError(f"no data files match {os.path.join(config.data.location, pattern)}"
                            " (data.location, data.pattern)")
    return found


def _open_text(path: str):
    raw = open(path, "rb")
    head = raw.read(2)
    raw.seek(0)
    stream = gzip.GzipFile(fileobj=raw) if gzip_by_magic(head) else raw
    return io.TextIOWrapper(stream, encoding="utf-8", newline="")


def _value(feature, kind: int, text: str, where: str) -> None:
    from tensorflow_metadata.proto.v0 import schema_pb2

    try:
        if kind == schema_pb2.INT:
            number = float(text)
            if number != int(number):
                raise ValueError
            feature.int64_list.value.append(int(number))
        elif kind == schema_pb2.FLOAT:
            feature.float_list.value.append(float(text))
        else:
            feature.bytes_list.value.append(text.encode())
    except ValueError:
        word = "an integer" if kind == schema_pb2.INT else "a number"
        raise LoopDataError(f"{where}: '{text}' is not {word}, as the schema says") from None


def _empty(feature, kind: int | None) -> None:
    from tensorflow_metadata.proto.v0 import schema_pb2

    lists = {schema_pb2.INT: "int64_list", schema_pb2.FLOAT: "float_list",
             schema_pb2.BYTES: "bytes_list"}
    if kind in lists:
        getattr(feature, lists[kind]).SetInParent()


def _guess(text: str) -> int:
    from tensorflow_metadata.proto.v0 import schema_pb2

    for kind, cast in ((schema_pb2.INT, int), (schema_pb2.FLOAT, float)):
        try:
            cast(text)
            return kind
        except ValueError:
            pass
    return schema_pb2.BYTES


def read_examples(config, schema) -> list:
    """Every row of the config's data as a tf.Example, typed by the schema (a CSV column the
    schema lacks is typed by its first value)."""
    import tensorflow as tf
    from tensorflow.core.example import example_pb2

    kinds = {f.name: f.type for f in schema.feature}
    examples = []
    for path in _files(config):
        if config.data.format == "csv":
            with _open_text(path) as f:
                reader = csv.reader(f)
                header = next(reader, None)
                if not header:
                    continue
                for line, row in enumerate(reader, start=2):
                    if len(row) != len(header):
                        raise LoopDataError(f"{path}:{line}: {len(row)} fields, the header has "
                                            f"{len(header)}")
                    e = example_pb2.Example()
                    for name, text in zip(header, row, strict=True):
                        if text == "":  # as CsvExampleGen: the feature, with no value
                            _empty(e.features.feature[name], kinds.get(name))
                            continue
                        if name not in kinds:
                            kinds[name] = _guess(text)
                        _value(e.features.feature[name], kinds[name], text, f"{path}:{line}")
                    examples.append(e)
        elif config.data.format == "tfrecord":
            compression = tfrecord_compression(path)
            for record in tf.data.TFRecordDataset(path, compression_type=compression):
                examples.append(example_pb2.Example.FromString(record.numpy()))
        else:
            raise LoopDataError(f"data.format {config.data.format}: the loop starts from csv or "
                                "tfrecord data")
    if not examples:
        raise LoopDataError(f"{config.data.location} holds no rows")
    return examples


def values(e, name: str) -> list:
    f = e.features.feature.get(name)
    if f is None:
        return []
    kind = f.WhichOneof("kind")
    return list(getattr(f, kind).value) if kind else []


def _model_features(config, schema) -> list[tuple[str, str]]:
    """(name, numeric | categorical) of the features the model reads, in schema order: the
    Trainer's own feature plan (components/features.py), the loop's request id aside."""
    from tandem.components.features import CATEGORICAL, feature_plan, model_features

    options = {name: o.as_options() for name, o in config.features.items()}
    try:
        plan = feature_plan(schema, config.label, config.problem_type, options)
    except ValueError as e:
        raise LoopDataError(str(e)) from None
    return [(name, "categorical" if spec["kind"] == CATEGORICAL else "numeric")
            for name, spec in model_features(plan).items() if name != ID]


@dataclasses.dataclass
class Drift:
    feature: str
    shift: float | None = None  # in the feature's own units
    swap: tuple[Any, Any] | None = None
    note: str = ""

    def apply(self, e) -> None:
        f = e.features.feature.get(self.feature)
        if f is None or not f.WhichOneof("kind"):
            return
        kind = f.WhichOneof("kind")
        vals = list(getattr(f, kind).value)
        if self.shift is not None:
            moved = [v + self.shift for v in vals]
            if kind == "int64_list":
                moved = [int(round(v)) for v in moved]
        else:
            a, b = self.swap
            moved = [b if v == a else a if v == b else v for v in vals]
        getattr(f, kind).ClearField("value")
        getattr(f, kind).value.extend(moved)


def check_recipe(config, schema) -> tuple[str, str]:
    """The drift recipe's feature and its kind (numeric | categorical), checked against the
    schema and the config's features before any work."""
    recipe = config.loop.drift
    features = dict(_model_features(config, schema))
    if recipe.feature:
        if recipe.feature == config.label:
            raise LoopDataError(f"loop.drift.feature: '{recipe.feature}' is the label; name a "
                                "feature the model reads")
        if recipe.feature not in features:
            known = ", ".join(sorted(features)) or "none"
            raise LoopDataError(f"loop.drift.feature: unknown feature '{recipe.feature}' (the "
                                f"model reads: {known})")
        name, kind = recipe.feature, features[recipe.feature]
    else:
        numeric = [n for n, k in features.items() if k == "numeric"]
        categorical = [n for n, k in features.items() if k == "categorical"]
        if recipe.swap is not None and categorical:
            name, kind = categorical[0], "categorical"
        elif numeric and recipe.swap is None:
            name, kind = numeric[0], "numeric"
        elif categorical:
            name, kind = categorical[0], "categorical"
        else:
            raise LoopDataError("loop.drift: the model reads no feature a recipe can change")
    if kind == "numeric" and recipe.swap is not None:
        raise LoopDataError(f"loop.drift.swap: '{name}' is numeric; shift it instead")
    if kind == "categorical" and recipe.shift is not None:
        raise LoopDataError(f"loop.drift.shift: '{name}' is categorical; swap two of its values"
                            " instead")
    return name, kind


def drift_recipe(config, schema, train: list) -> Drift:
    """The config's drift recipe made concrete from the training part (a standard deviation,
    the most and the least frequent value)."""
    recipe = config.loop.drift
    name, kind = check_recipe(config, schema)
    if kind == "numeric":
        seen = np.array([v for e in train for v in values(e, name)], dtype=np.float64)
        std = float(seen.std()) if len(seen) > 1 else 0.0
        if not std:
            raise LoopDataError(f"loop.drift.feature: '{name}' does not vary in the training "
                                "part; name another feature")
        k = 2.0 if recipe.shift is None else recipe.shift
        return Drift(name, shift=k * std,
                     note=f"{name} shifted by {k:g} standard deviations ({k * std:+.4g})")
    counts: dict[Any, int] = {}
    for e in train:
        for v in values(e, name):
            counts[v] = counts.get(v, 0) + 1
    if recipe.swap is not None:
        wanted = []
        for text in recipe.swap:
            match = [v for v in counts if (v.decode() if isinstance(v, bytes) else str(v))
                     == str(text)]
            if not match:
                raise LoopDataError(f"loop.drift.swap: '{name}' has no value '{text}' in the "
                                    "training part")
            wanted.append(match[0])
        a, b = wanted
    else:
        # The most and the least frequent value: a swap moves each value's share to the
        # other, so the monitor sees a change of their difference (two equally frequent
        # values swapped change the feature's meaning, which only labels can show).
        top = sorted(counts, key=lambda v: (-counts[v], str(v)))
        if len(top) < 2:
            raise LoopDataError(f"loop.drift.feature: '{name}' has fewer than two values; name "
                                "another feature")
        a, b = top[0], top[-1]

    def text(v):
        return v.decode() if isinstance(v, bytes) else str(v)

    return Drift(name, swap=(a, b), note=f"{name}: '{text(a)}' and '{text(b)}' swapped")


def label_text(e, label: str, where: str) -> str:
    found = values(e, label)
    if len(found) != 1:
        raise LoopDataError(f"{where}: {len(found)} values of the label '{label}' (one expected)")
    v = found[0]
    if isinstance(v, bytes):
        return v.decode()
    if isinstance(v, float):
        return repr(float(np.float32(v)))
    return str(v)


def prepare(config, work: str, rows: int | None, start_time: float) -> HeldOut:
    """Split the config's rows, write v1's training data and the three request parts with
    their labels; returns what the loop's steps read."""
    import tensorflow as tf
    from google.protobuf import text_format
    from tensorflow_metadata.proto.v0 import schema_pb2

    from tandem.schemas import load_schema
    from tandem.schemas.identifiers import declare_identifiers

    schema = load_schema(config.schema)
    examples = read_examples(config, schema)
    rng = np.random.default_rng(config.model.seed)
    order = rng.permutation(len(examples))
    if rows:
        order = order[:rows]
    has_ids = all(values(examples[i], ID) for i in order[:100])
    for n, i in enumerate(np.sort(order)):
        if not has_ids:
            examples[i].features.feature[ID].bytes_list.value.append(
                f"{config.name}-{n:07d}".encode())
    held = int(round(len(order) * config.loop.holdout))
    train = [examples[i] for i in order[held:]]
    held_out = [examples[i] for i in order[:held]]
    if len(train) < 50 or len(held_out) < 50:
        raise LoopDataError(f"{len(order)} rows: too few to hold {config.loop.holdout:.0%} out "
                            "and still train (the loop needs at least 100)")
    drift = drift_recipe(config, schema, train)

    if ID not in {f.name for f in schema.feature}:
        feature = schema.feature.add(name=ID, type=schema_pb2.BYTES)
        feature.presence.min_fraction = 1.0
        feature.presence.min_count = 1
    declare_identifiers(schema, [ID])
    # The schema's dataset size floor (a proposed one is 10% of the rows it was proposed on)
    # holds for each split of the config's whole data. The loop's spans are parts of at most
    # --rows of it: v1's training part and the log span are as large as the loop makes them,
    # and ExampleValidator judges each one's eval split (the smaller, eval_buckets of the
    # buckets), so the loop's copy lowers the floor to the smallest such split, and says so.
    schema_note = ""
    floor = schema.dataset_constraints.min_examples_count
    smallest_span = min(len(train), len(held_out) * 4 // 5)  # v1's part; the clean+drifted log
    split = config.split
    smallest = smallest_span * split.eval_buckets // (split.train_buckets + split.eval_buckets)
    smallest = max(1, int(smallest * 0.8))  # hash buckets are not exact shares
    if floor > smallest:
        schema.dataset_constraints.min_examples_count = smallest
        schema_note = (f"the schema's min_examples_count {floor} is above the loop's smallest "
                       f"split (about {smallest} examples of {len(order)} rows); the loop's "
                       f"copy of the schema uses {smallest}")
    os.makedirs(work, exist_ok=True)
    schema_path = os.path.join(work, "schema.pbtxt")
    with open(schema_path, "w") as f:
        f.write(text_format.MessageToString(schema))

    span = os.path.join(work, "data", "span-1")
    os.makedirs(span, exist_ok=True)
    with tf.io.TFRecordWriter(os.path.join(span, "data.tfrecord.gz"), "GZIP") as w:
        for e in train:
            w.write(e.SerializeToString())

    parts: dict[str, str] = {}
    counts = {"training": len(train)}
    labels_rows: dict[str, list[tuple[str, str, float]]] = {}
    # The clean part is exactly three drifted parts long, and the drifted part a whole number
    # of requests, so that the monitor's windows of one drifted part's requests fall on the
    # boundary: three clean windows, then the drifted one.
    drifted = int(round(len(held_out) * SHARES[1][1])) // REQUEST_BATCH * REQUEST_BATCH
    sizes = {"clean": 3 * drifted, "drift": drifted, "mirror": len(held_out) - 4 * drifted}
    offset = 0
    for i, (part, _) in enumerate(SHARES):
        n = sizes[part]
        chunk = held_out[offset:offset + n]
        offset += n
        directory = os.path.join(work, part, f"span-{i + 2}")
        os.makedirs(directory, exist_ok=True)
        rows_out = []
        with tf.io.TFRecordWriter(os.path.join(directory, "requests.tfrecord.gz"), "GZIP") as w:
            for e in chunk:
                request = type(e)()
                request.CopyFrom(e)
                rid = values(e, ID)[0].decode()
                rows_out.append((rid, label_text(e, config.label, f"row {rid}"),
                                 start_time + config.loop.label_delay_s))
                del request.features.feature[config.label]
                if part == "drift":
                    drift.apply(request)
                w.write(request.SerializeToString())
        parts[part] = os.path.join(directory, "*.tfrecord.gz")
        labels_rows[part] = rows_out
        counts[part] = len(chunk)

    def write_labels(path: str, which: tuple[str, ...]) -> str:
        with open(path, "w", newline="") as f:
            out = csv.writer(f)
            out.writerow(["request_id", "label", "timestamp"])
            for part in which:
                for rid, label, ts in labels_rows[part]:
                    out.writerow([rid, label, f"{ts:.3f}"])
        return path

    label_std = None
    if config.problem_type == "regression":
        ys = np.array([float(label_text(e, config.label, "training row")) for e in train])
        label_std = float(ys.std())
    overrides = [f"data.location={os.path.join(work, 'data')}", "data.format=tfrecord",
                 "data.pattern=span-{SPAN}/*", f"schema={schema_path}",
                 f"output_dir={os.path.join(work, 'pipeline')}"]
    if ID not in config.features:
        overrides.append(f"features.{ID}={{kind: skip}}")
    return HeldOut(
        overrides=overrides, schema=schema_path, clean=parts["clean"], drift=parts["drift"],
        mirror=parts["mirror"],
        labels=write_labels(os.path.join(work, "labels.csv"), ("clean",)),
        mirror_labels=write_labels(os.path.join(work, "labels-mirror.csv"), ("mirror",)),
        counts=counts, drift_feature=drift.feature, drift_note=drift.note, label_std=label_std,
        schema_note=schema_note)


def shuffled_labels(path: str, out: str, seed: int) -> str:
    """The labels file with its labels permuted among the request ids (a broken label join:
    the bad-canary scenario's training data)."""
    with open(path, newline="") as f:
        rows = list(csv.reader(f))
    header, body = rows[0], rows[1:]
    labels = [r[1] for r in body]
    np.random.default_rng(seed).shuffle(labels)
    with open(out, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(header)
        for r, label in zip(body, labels, strict=True):
            w.writerow([r[0], label, *r[2:]])
    return out
