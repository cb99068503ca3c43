"""Trainer, the export: the SavedModel's signatures, TF Serving's method names, the warmup
requests and the build record, so what is served takes raw tf.Examples with the Transform
graph inside and says how it was built.
"""

from __future__ import annotations

import datetime
import os
from typing import Any

import tensorflow as tf
from tensorflow_serving.apis import model_pb2, predict_pb2, prediction_log_pb2

from tandem.components import build_record
from tandem.components import tfx_api as tfx
from tandem.schemas.contracts import (
    CLASSIFY_METHOD,
    CLASSIFY_SIGNATURE,
    EXAMPLES_INPUT,
    REGRESS_METHOD,
    REGRESS_SIGNATURE,
    SERVING_DEFAULT,
    TRANSFORM_SIGNATURE,
    warmup_path,
)

WARMUP_RECORDS = 64


def signatures(
    model, plan, transform_output, classes: list[str] | None, scale: tuple[float, float]
) -> dict[str, Any]:
    """serving_default (predict) on raw examples, transform_features, and the classify or
    regress signature TF Serving's Classify/Regress APIs call. Regression outputs are in the
    label's own units: the scaling Transform applied to the label is undone here."""
    model.tft_layer = transform_output.transform_features_layer()
    raw_spec = transform_output.raw_feature_spec()
    label = plan["label"]
    serving_spec = {k: v for k, v in raw_spec.items() if k != label}
    feature_names = list(model.input.keys()) if isinstance(model.input, dict) else []
    problem = plan["problem_type"]
    names = tf.constant(classes) if classes is not None else None
    mean, std = scale

    def predict(serialized):
        parsed = tf.io.parse_example(serialized, serving_spec)
        transformed = model.tft_layer(parsed)
        out = model({k: transformed[k] for k in feature_names})
        return out * std + mean if problem == "regression" else out

    def classification_outputs(scores):
        if len(scores.shape) == 1:  # binary: sigmoid probability of class 1
            scores = tf.stack([1.0 - scores, scores], axis=1)
        batch = tf.shape(scores)[0]
        return {"scores": scores, "classes": tf.tile(tf.expand_dims(names, 0), [batch, 1])}

    string_input = tf.TensorSpec([None], tf.string, name=EXAMPLES_INPUT)

    @tf.function(input_signature=[string_input])
    def serve(examples):
        out = predict(examples)
        if problem == "regression":
            return {"predictions": out}
        result = classification_outputs(out)
        if len(out.shape) == 1:
            result["probabilities"] = out
        return result

    @tf.function(input_signature=[tf.TensorSpec([None], tf.string, name="inputs")])
    def classify(inputs):
        return classification_outputs(predict(inputs))

    @tf.function(input_signature=[tf.TensorSpec([None], tf.string, name="inputs")])
    def regress(inputs):
        return {"outputs": predict(inputs)}

    @tf.function(input_signature=[string_input])
    def transform_features(examples):
        parsed = tf.io.parse_example(examples, raw_spec)
        return model.tft_layer(parsed)

    signatures = {
        SERVING_DEFAULT: serve.get_concrete_function(),
        TRANSFORM_SIGNATURE: transform_features.get_concrete_function(),
    }
    if problem == "regression":
        signatures[REGRESS_SIGNATURE] = regress.get_concrete_function()
    else:
        signatures[CLASSIFY_SIGNATURE] = classify.get_concrete_function()
    return signatures


def set_method_names(saved_model_dir: str) -> None:
    """TF Serving's Classify/Regress check the signature's method name, which TF2 always
    exports as predict; set it in saved_model.pb."""
    from tensorflow.core.protobuf import saved_model_pb2

    path = os.path.join(saved_model_dir, "saved_model.pb")
    saved = saved_model_pb2.SavedModel()
    with tf.io.gfile.GFile(path, "rb") as f:
        saved.ParseFromString(f.read())
    for meta_graph in saved.meta_graphs:
        if CLASSIFY_SIGNATURE in meta_graph.signature_def:
            meta_graph.signature_def[CLASSIFY_SIGNATURE].method_name = CLASSIFY_METHOD
        if REGRESS_SIGNATURE in meta_graph.signature_def:
            meta_graph.signature_def[REGRESS_SIGNATURE].method_name = REGRESS_METHOD
    with tf.io.gfile.GFile(path, "wb") as f:
        f.write(saved.SerializeToString())


def write_warmup_requests(
    saved_model_dir: str, eval_files: list[str], label: str, model_name: str
) -> int:
    """assets.extra/tf_serving_warmup_requests: PredictionLog records of eval examples
    (label removed), so a server warms the model up before it takes traffic."""
    from tensorflow.core.example import example_pb2

    from tandem.components.model_checks import raw_records

    examples: list[bytes] = []
    for record in raw_records(eval_files, WARMUP_RECORDS):
        example = example_pb2.Example.FromString(record)
        if label in example.features.feature:
            del example.features.feature[label]
        examples.append(example.SerializeToString())
    path = warmup_path(saved_model_dir)
    tf.io.gfile.makedirs(os.path.dirname(path))
    with tf.io.TFRecordWriter(path) as writer:
        for example in examples:
            request = predict_pb2.PredictRequest(
                model_spec=model_pb2.ModelSpec(name=model_name, signature_name=SERVING_DEFAULT)
            )
            request.inputs[EXAMPLES_INPUT].CopyFrom(tf.make_tensor_proto([example], dtype=tf.string))
            log = prediction_log_pb2.PredictionLog(
                predict_log=prediction_log_pb2.PredictLog(request=request)
            )
            writer.write(log.SerializeToString())
    return len(examples)


def write_build_record(
    fn_args: tfx.components.FnArgs, config: dict[str, Any], counts: dict[str, int],
    metrics: dict[str, float], classes: list[str] | None = None,
    hyperparameters: dict[str, Any] | None = None, scale: tuple[float, float] = (0.0, 1.0),
    selection: dict[str, Any] | None = None, naive: dict[str, Any] | None = None,
) -> dict[str, Any]:
    from tandem.schemas import load_schema, schema_fingerprint

    transform_dir = fn_args.transform_graph_path
    schema = load_schema(fn_args.schema_path) if fn_args.schema_path.endswith(".pbtxt") else None
    plan = config["plan"]
    record = {
        "model_name": config["model_name"],
        "created": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "problem_type": plan["problem_type"],
        "label": plan["label"],
        "classes": classes,
        "schema": {"fingerprint": schema_fingerprint(schema) if schema else "unknown"},
        "transform": {
            "fingerprint": build_record.directory_fingerprint(
                os.path.join(transform_dir, "transform_fn")
            ),
            "features": plan["features"],
        },
        "vocabularies": build_record.vocabulary_entries(
            os.path.join(transform_dir, "transform_fn", "assets")
        ),
        "data": {
            "span": config.get("data_span"),
            "input_fingerprint": config.get("data_fingerprint"),
            "train_examples": counts["train"],
            "eval_examples": counts["eval"],
            **({"source": config["data_source"]} if config.get("data_source") else {}),
        },
        "eval_metrics": {k: round(float(v), 6) for k, v in metrics.items()},
        "hyperparameters": hyperparameters or config["hyperparameters"],
        # Which model family was exported and why (components/model_selection.py).
        "selection": selection,
        # The Evaluator's default bar (components/evaluator.py).
        "naive": naive,
        "label_scale": list(scale) if plan["problem_type"] == "regression" else None,
        "config_fingerprint": config["config_fingerprint"],
        "code_version": build_record.code_version(),
        "libraries": build_record.library_versions(),
    }
    build_record.write(fn_args.serving_model_dir, record)
    return record


def export(model: tf.keras.Model, training, hyperparameters: dict[str, Any],
           metrics: dict[str, float], selection: dict[str, Any],
           naive: dict[str, Any]) -> dict[str, Any]:
    """The SavedModel with its signatures and method names, its warmup requests and its
    build record (returned). `training` is the run's components/trainer_model.Training."""
    fn_args, plan = training.fn_args, training.plan
    model.save(fn_args.serving_model_dir, save_format="tf",
               signatures=signatures(model, plan, training.transform_output, training.classes,
                                     training.scale))
    set_method_names(fn_args.serving_model_dir)
    write_warmup_requests(fn_args.serving_model_dir, fn_args.eval_files, plan["label"],
                          training.config["model_name"])
    return write_build_record(fn_args, training.config, training.counts, metrics,
                              training.classes, hyperparameters, training.scale,
                              selection=selection, naive=naive)
