"""`tandem explain`: one example through an exported model, step by step.

    raw tf.Example  ->  transform_features (the Transform graph in the SavedModel)
                    ->  the Keras model on the transformed features  ->  score
                    ==  serving_default on the raw bytes (what TF Serving answers)

For each model input it also shows how far the score moves when that input is set to its
neutral value (0 for a z-scored number, the training mean; the most frequent id for a
vocabulary), so a surprising score points at the features behind it.
"""

from __future__ import annotations

import os
from typing import Any

import numpy as np

from tandem.schemas.contracts import SERVING_DEFAULT, TRANSFORM_SIGNATURE
from tandem.schemas.exit_status import BadInputError
from tandem.schemas.files import gzip_by_magic


class ExplainError(BadInputError):
    """Bad input for `tandem explain` (exit status 2)."""


def _raw(example) -> dict[str, list]:
    out = {}
    for name, feature in sorted(example.features.feature.items()):
        kind = feature.WhichOneof("kind")
        values = list(getattr(feature, kind).value) if kind else []
        out[name] = [v.decode("utf-8", "replace") if isinstance(v, bytes) else v for v in values]
    return out


def _score(outputs, problem: str) -> float:
    from tandem.schemas.contracts import served_output

    value = served_output(outputs, problem)
    value = value.reshape(len(value), -1)[0]
    return float(value[-1] if problem == "binary_classification" else value.max()
                 if problem == "multiclass_classification" else value[0])


def load(serving_dir: str):
    import tensorflow as tf

    from tandem.components.build_record import RecordError, load_record

    if not os.path.isfile(os.path.join(serving_dir, "saved_model.pb")):
        raise ExplainError(f"{serving_dir}: not a SavedModel (no saved_model.pb)")
    try:
        record = load_record(serving_dir)
    except RecordError as e:
        raise ExplainError(str(e)) from None
    loaded = tf.saved_model.load(serving_dir)
    missing = [s for s in (SERVING_DEFAULT, TRANSFORM_SIGNATURE) if s not in loaded.signatures]
    if missing:
        raise ExplainError(f"{serving_dir}: no {' or '.join(missing)} signature; explain needs "
                           "a tandem export")
    return loaded, record


def explain(serving_dir: str, serialized: bytes, loaded=None, record=None) -> dict[str, Any]:
    import tensorflow as tf
    from tensorflow.core.example import example_pb2

    if loaded is None:
        loaded, record = load(serving_dir)
    try:
        example = example_pb2.Example.FromString(serialized)
    except Exception:  # noqa: BLE001 - any decode failure is bad input
        raise ExplainError("the example is not a serialized tf.Example") from None
    problem = record["problem_type"]
    label = record.get("label")
    batch = tf.constant([serialized])
    try:
        transformed = loaded.signatures[TRANSFORM_SIGNATURE](examples=batch)
        served = _score(loaded.signatures[SERVING_DEFAULT](examples=batch), problem)
    except tf.errors.InvalidArgumentError as e:
        first = str(e).strip().splitlines()[0]
        raise ExplainError(f"the model cannot parse this example: {first}") from None
    names = [n for n in record["transform"]["features"]
             if record["transform"]["features"][n]["kind"] != "skip" and n in transformed]
    inputs = {n: transformed[n] for n in names}
    mean, std = record.get("label_scale") or (0.0, 1.0)

    def model_score(features) -> float:
        out = np.asarray(loaded(features, training=False)).reshape(-1)
        if problem == "regression":
            return float(out[0] * std + mean)
        return float(out[-1] if problem == "binary_classification" else out.max())

    score = model_score(inputs)
    moves = {}
    for n in names:
        value = inputs[n]
        neutral = tf.zeros_like(value)
        moves[n] = score - model_score({**inputs, n: neutral})
    raw = _raw(example)
    return {
        "model": serving_dir,
        "model_name": record.get("model_name"),
        "problem_type": problem,
        "raw": {k: v for k, v in raw.items() if k != label},
        "label": raw.get(label) if label else None,
        "transformed": {n: np.asarray(transformed[n]).reshape(-1).tolist() for n in names},
        "score": score,
        "served": served,
        "moves": dict(sorted(moves.items(), key=lambda kv: -abs(kv[1]))),
    }


def read_example(path: str, index: int = 0) -> bytes:
    """The index-th record of a TFRecord file (GZIP or not), or a text-format tf.Example."""
    import tensorflow as tf
    from google.protobuf import text_format
    from tensorflow.core.example import example_pb2

    if not os.path.isfile(path):
        raise ExplainError(f"{path}: no such file")
    with open(path, "rb") as f:
        head = f.read(2)
    if path.endswith((".pbtxt", ".txt")):
        try:
            with open(path) as f:
                return text_format.Parse(f.read(), example_pb2.Example()).SerializeToString()
        except text_format.ParseError as e:
            raise ExplainError(f"{path}: not a text tf.Example: {e}") from None
    compression = "GZIP" if gzip_by_magic(head) else ""
    try:
        for i, record in enumerate(tf.data.TFRecordDataset(path, compression_type=compression)):
            if i == index:
                return record.numpy()
    except tf.errors.DataLossError:
        raise ExplainError(f"{path}: not a TFRecord file (or torn)") from None
    raise ExplainError(f"{path}: has no record {index}")


def format_explain(trace: dict[str, Any]) -> list[str]:
    def short(values: list) -> str:
        text = ", ".join(f"{v:.4g}" if isinstance(v, float) else str(v) for v in values[:4])
        return text + (", ..." if len(values) > 4 else "")

    lines = [f"model {trace['model_name']} ({trace['problem_type']}): {trace['model']}", "",
             f"{'feature':<20} {'raw':<24} {'transformed':<14} {'score moves by':>14}"]
    for name, raw in trace["raw"].items():
        t = trace["transformed"].get(name)
        move = trace["moves"].get(name)
        lines.append(f"{name:<20} {short(raw):<24} "
                     f"{short(t) if t is not None else '(not an input)':<14} "
                     f"{'' if move is None else f'{move:+.4f}':>14}")
    lines += ["", f"score from the transformed features: {trace['score']:.6f}",
              f"served (serving_default on the raw bytes): {trace['served']:.6f}"]
    if trace.get("label"):
        lines.append(f"label in the example: {short(trace['label'])}")
    top = [f"{n} {m:+.4f}" for n, m in list(trace["moves"].items())[:3]]
    lines.append(f"largest moves when an input is set to neutral: {', '.join(top)}")
    return lines
