"""Trainer: run_fn builds one wide-and-deep Keras model for any tabular dataset and exports a
SavedModel that takes raw serialized tf.Examples, with the Transform graph inside."""

from __future__ import annotations

import datetime
import math
import os
from typing import Any

import numpy as np
import tensorflow as tf
import tensorflow_transform as tft
from absl import logging
from tensorflow_serving.apis import model_pb2, predict_pb2, prediction_log_pb2
from tfx import v1 as tfx
from tfx_bsl.public import tfxio

from tandem.components import build_record
from tandem.components.features import BUCKETIZE, CATEGORICAL, NUMERIC, model_features
from tandem.components.transform import LABEL_MEAN, LABEL_STD, LABEL_VOCABULARY
from tandem.schemas.contracts import (
    CLASSIFY_METHOD,
    CLASSIFY_SIGNATURE,
    EXAMPLES_INPUT,
    REGRESS_METHOD,
    REGRESS_SIGNATURE,
    SERVING_DEFAULT,
    TRANSFORM_SIGNATURE,
    class_names,
    warmup_path,
)
from tandem.schemas.files import tfrecord_compression

WARMUP_RECORDS = 64
MIN_STEPS_PER_EPOCH = 30


def _dataset(files, data_accessor, transform_output, plan, batch_size, seed, epochs=None,
             classes: list[str] | None = None):
    """Raw examples through the Transform graph: the same graph the SavedModel serves with,
    and the raw Examples artifact keeps its span for the build record.

    Class labels become positions in `classes`; examples whose class is not among them (a
    class seen only in the eval split) are left out rather than fed as an invalid id."""
    raw = data_accessor.tf_dataset_factory(
        files,
        tfxio.TensorFlowDatasetOptions(
            batch_size=batch_size, num_epochs=epochs, shuffle=epochs is None, shuffle_seed=seed,
        ),
        transform_output.raw_metadata.schema,
    )
    tft_layer = transform_output.transform_features_layer()
    label = plan["label"]
    table = None
    if classes is not None and plan["label_dtype"] == "BYTES":
        table = tf.lookup.StaticHashTable(
            tf.lookup.KeyValueTensorInitializer(
                tf.constant(classes), tf.range(len(classes), dtype=tf.int64)
            ),
            default_value=-1,
        )

    def apply_transform(features):
        transformed = tft_layer(features)
        transformed.pop(LABEL_MEAN, None)
        transformed.pop(LABEL_STD, None)
        y = transformed.pop(label)
        if classes is None:
            return transformed, y
        y = table.lookup(y) if table is not None else tf.cast(y, tf.int64)
        known = (y >= 0) & (y < len(classes))
        return {k: tf.boolean_mask(v, known) for k, v in transformed.items()}, tf.boolean_mask(
            y, known
        )

    return raw.map(apply_transform, num_parallel_calls=tf.data.AUTOTUNE).prefetch(
        tf.data.AUTOTUNE
    )


def label_classes(plan: dict[str, Any], transform_output) -> list[str] | None:
    """The served class order (tandem.schemas.contracts.class_names), or None for regression."""
    if plan["problem_type"] == "regression":
        return None
    path = transform_output.vocabulary_file_by_name(LABEL_VOCABULARY)
    with tf.io.gfile.GFile(path) as f:
        values = [line.rstrip("\n") for line in f if line.rstrip("\n")]
    return class_names(plan["problem_type"], plan["label_dtype"], plan["label"], values)


def label_scale(files, data_accessor, transform_output, plan) -> tuple[float, float]:
    """The regression label's mean and standard deviation as Transform recorded them."""
    raw = data_accessor.tf_dataset_factory(
        files, tfxio.TensorFlowDatasetOptions(batch_size=1, num_epochs=1, shuffle=False),
        transform_output.raw_metadata.schema,
    )
    transformed = transform_output.transform_features_layer()(next(iter(raw)))
    return float(transformed[LABEL_MEAN][0]), float(transformed[LABEL_STD][0])


EPOCH_MESSAGE = "Trainer epoch %d/%d: %s"  # the runner turns these into progress lines


class EpochLog(tf.keras.callbacks.Callback):
    """One log record per epoch (instead of Keras' own printing to stdout)."""

    def __init__(self, epochs: int):
        super().__init__()
        self.epochs = epochs

    def on_epoch_end(self, epoch, logs=None):
        shown = " ".join(f"{k} {v:.4f}" for k, v in (logs or {}).items() if k.startswith("val_"))
        logging.info(EPOCH_MESSAGE, epoch + 1, self.epochs, shown)


# Early stopping watches the validation metric the Evaluator gates on.
EARLY_STOPPING = {
    "auc": ("val_auc", "max"),
    "accuracy": ("val_accuracy", "max"),
    "rmse": ("val_rmse", "min"),
    "mae": ("val_mae", "min"),
}


def raw_labels(files: list[str], plan: dict[str, Any], classes: list[str] | None,
               keep_unknown: bool = False) -> np.ndarray:
    """Every example's label as the model's target, read from the raw examples alone (no
    Transform): the class position in `classes`, or the regression label in its own units.
    Examples without a label are left out. A class not in `classes` is left out too, as the
    training input leaves it out, or kept as -1 (`keep_unknown`: the Evaluator scores such
    rows, always wrong)."""
    label, dtype = plan["label"], plan["label_dtype"]
    tf_dtype = {"BYTES": tf.string, "INT": tf.int64}.get(dtype, tf.float32)
    values: list[np.ndarray] = []
    for pattern in files:
        for path in sorted(tf.io.gfile.glob(pattern)):
            ds = tf.data.TFRecordDataset(path, compression_type=tfrecord_compression(path)).batch(8192)
            for batch in ds:
                parsed = tf.io.parse_example(batch, {label: tf.io.VarLenFeature(tf_dtype)})
                sparse = parsed[label]
                first = tf.sparse.to_dense(sparse)[:, :1] if sparse.dense_shape[1] else None
                if first is None:
                    continue
                present = tf.math.bincount(tf.cast(sparse.indices[:, 0], tf.int32),
                                           minlength=tf.shape(first)[0]) > 0
                values.append(first.numpy()[present.numpy(), 0])
    raw = np.concatenate(values) if values else np.zeros(0)
    if classes is None:
        return raw.astype(np.float64)
    if dtype == "BYTES":
        index = {c: i for i, c in enumerate(classes)}
        ids = np.array([index.get(v.decode("utf-8", "replace"), -1) for v in raw], np.int64)
    else:
        ids = raw.astype(np.int64)
    known = (ids >= 0) & (ids < len(classes))
    return np.where(known, ids, -1) if keep_unknown else ids[known]


def count_examples(files: list[str]) -> int:
    """Records in (GZIP) TFRecord files, counted in C++."""
    total = 0
    for pattern in files:
        for path in tf.io.gfile.glob(pattern):
            ds = tf.data.TFRecordDataset(path, compression_type=tfrecord_compression(path))
            total += int(ds.reduce(tf.constant(0, tf.int64), lambda n, _: n + 1))
    return total


def build_model(
    plan: dict[str, Any], transform_output, hp: dict[str, Any], classes: int
) -> tf.keras.Model:
    """Wide (one-hot categoricals and their crosses, linear) and deep (embeddings +
    numerics, MLP). With no hidden units and no crosses it is a linear model on the
    transformed features (the baseline of the model checks)."""
    inputs, wide, deep = {}, [], []
    categorical: dict[str, tuple[Any, int]] = {}
    for name, spec in model_features(plan).items():
        kind = spec["kind"]
        if kind == NUMERIC:
            inputs[name] = tf.keras.Input(shape=(), name=name, dtype=tf.float32)
            deep.append(tf.keras.layers.Reshape((1,))(inputs[name]))
            continue
        if kind == CATEGORICAL:
            size = transform_output.vocabulary_size_by_name(name) + spec["num_oov_buckets"]
        elif kind == BUCKETIZE:
            size = spec["num_buckets"] + 1
        else:
            continue
        inputs[name] = tf.keras.Input(shape=(), name=name, dtype=tf.int64)
        ids = tf.keras.layers.Reshape((1,))(inputs[name])
        categorical[name] = (ids, size)
        wide.append(tf.keras.layers.CategoryEncoding(num_tokens=size, output_mode="one_hot")(ids))
        dim = hp["embedding_dim"] or min(16, max(2, int(math.ceil(2 * size ** 0.25))))
        embedded = tf.keras.layers.Embedding(size, dim)(ids)
        deep.append(tf.keras.layers.Flatten()(embedded))
    if not inputs:
        raise ValueError("no model features: every feature is skipped")
    for names in hp.get("crosses") or []:
        missing = [n for n in names if n not in categorical]
        if missing:
            raise ValueError(f"model.crosses {names}: {', '.join(missing)} must be categorical "
                             "or bucketized model features")
        crossed, size = None, 1
        for n in names:  # the cell id of the cross: mixed radix over the features' ids
            ids, n_size = categorical[n]
            crossed = ids if crossed is None else crossed * n_size + ids
            size *= n_size
        wide.append(tf.keras.layers.CategoryEncoding(num_tokens=size,
                                                     output_mode="one_hot")(crossed))
    units = 1 if classes <= 2 else classes
    x = tf.keras.layers.Concatenate()(deep) if len(deep) > 1 else deep[0]
    for width in hp["hidden_units"]:
        x = tf.keras.layers.Dense(width, activation="relu")(x)
    logits = tf.keras.layers.Dense(units)(x)
    if wide:
        w = tf.keras.layers.Concatenate()(wide) if len(wide) > 1 else wide[0]
        logits = tf.keras.layers.Add()([logits, tf.keras.layers.Dense(units)(w)])
    problem = plan["problem_type"]
    if problem == "regression":
        output = tf.keras.layers.Reshape(())(logits)
        loss, metrics = "mse", [tf.keras.metrics.RootMeanSquaredError(name="rmse"),
                                tf.keras.metrics.MeanAbsoluteError(name="mae")]
    elif units == 1:
        output = tf.keras.layers.Reshape(())(tf.keras.layers.Activation("sigmoid")(logits))
        loss, metrics = "binary_crossentropy", [tf.keras.metrics.AUC(name="auc"),
                                                tf.keras.metrics.BinaryAccuracy(name="accuracy")]
    else:
        output = tf.keras.layers.Softmax()(logits)
        loss = "sparse_categorical_crossentropy"
        metrics = [tf.keras.metrics.SparseCategoricalAccuracy(name="accuracy")]
    model = tf.keras.Model(inputs=inputs, outputs=output)
    model.compile(optimizer=tf.keras.optimizers.Adam(hp["learning_rate"]), loss=loss,
                  metrics=metrics)
    return model


def _signatures(
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


def run_fn(fn_args: tfx.components.FnArgs) -> None:
    """TFX Trainer entry point: train, run the model checks (components/model_checks.py),
    export, and write the build record."""
    config = fn_args.custom_config
    plan, hp = config["plan"], config["hyperparameters"]
    checks = config.get("checks") or {"enabled": False}
    seed = hp["seed"]
    tf.keras.utils.set_random_seed(seed)
    transform_output = tft.TFTransformOutput(fn_args.transform_graph_path)
    counts = {"train": count_examples(fn_args.train_files), "eval": count_examples(fn_args.eval_files)}
    # An epoch is at least MIN_STEPS_PER_EPOCH batches (the training input repeats), so a
    # few hundred rows still get a few hundred updates instead of ten.
    steps_per_epoch = max(MIN_STEPS_PER_EPOCH, counts["train"] // hp["batch_size"])
    epochs = hp["epochs"]
    if hp["max_steps"]:
        steps_per_epoch = min(steps_per_epoch, hp["max_steps"])
        epochs = max(1, min(epochs, hp["max_steps"] // steps_per_epoch))
    classes = label_classes(plan, transform_output)
    scale = (0.0, 1.0)
    if classes is None:
        scale = label_scale(fn_args.train_files, fn_args.data_accessor, transform_output, plan)
    n_classes = len(classes) if classes else 1

    def make_eval():
        return _dataset(fn_args.eval_files, fn_args.data_accessor, transform_output, plan,
                        hp["batch_size"], seed, epochs=1, classes=classes)

    def prepare():
        """The seeded start of a training, (train, eval) datasets: the tuning, the training
        and the reproducibility check all start here."""
        tf.keras.utils.set_random_seed(seed)
        train = _dataset(fn_args.train_files, fn_args.data_accessor, transform_output, plan,
                         hp["batch_size"], seed, classes=classes)
        return train, make_eval()

    def build(h):
        return build_model(plan, transform_output, h, n_classes)

    from tandem.components import exported_model_checks as exported_checks
    from tandem.components import model_checks as mc
    from tandem.components import model_selection as ms
    from tandem.components.importance import importance
    from tandem.components.sampling_error import metric

    # One eval sample for the model selection and the checks.
    features, labels = mc.take(make_eval(), checks.get("sample_examples", 4000))
    sample = mc.Sample(features, labels, mc.raw_records(fn_args.eval_files, checks["export_examples"])
                       if checks["enabled"] else [])
    measure, higher = metric(config["deciding_metric"], plan["problem_type"])
    results: list[dict[str, Any]] = []
    used = dict(hp)
    if checks["enabled"]:
        results.append(mc.model_spec(build, hp, prepare()[0], checks["spec_steps"]))
        logging.info(CHECK_MESSAGE, results[-1]["check"], results[-1]["summary"])
        if checks["tuning_trials"] > 1:
            used, trial = mc.tuning(build, hp, prepare()[0], sample, measure, higher,
                                    checks["tuning_trials"], checks["tuning_steps"], seed,
                                    config["deciding_metric"],
                                    steps_per_epoch)
            results.append(trial)
            logging.info(CHECK_MESSAGE, trial["check"], trial["summary"])
    # The pipeline config fixed the deciding metric (accuracy for multi-class, as it validates).
    monitor, mode = EARLY_STOPPING[config["deciding_metric"]]

    def fit(h: dict[str, Any], log_epochs: bool) -> tuple[tf.keras.Model, Any]:
        """One seeded training of hyperparameters h, kept at its best epoch."""
        train, evaluation = prepare()
        model = build(h)
        callbacks = [tf.keras.callbacks.EarlyStopping(
            monitor=monitor, mode=mode, patience=hp["early_stopping_patience"],
            restore_best_weights=True,
        )] + ([EpochLog(epochs)] if log_epochs else [])
        guard = None
        if checks["enabled"]:
            guard = mc.FiniteGuard()
            callbacks += [guard]
        model.fit(train, steps_per_epoch=steps_per_epoch, epochs=epochs,
                  validation_data=evaluation, callbacks=callbacks, verbose=0)
        return model, guard

    logging.info("training %d epochs x %d steps on %d examples (early stopping on %s)", epochs,
                 steps_per_epoch, counts["train"], monitor)
    model, guard = fit(used, log_epochs=True)
    # The simplest adequate model: the configured one only when it beats a linear model on
    # the same features beyond the sampling error. The linear model trains at the larger of
    # the configured and the tuned learning rate: under-trained at a deep model's small
    # rate, it would be no alternative.
    linear_hp = {**used, "hidden_units": [], "crosses": [],
                 "learning_rate": max(used["learning_rate"], hp["learning_rate"])}
    is_linear = not used["hidden_units"] and not used.get("crosses")
    linear = None if is_linear else fit(linear_hp, log_epochs=False)
    # The Evaluator's value bar: the configured threshold, else the naive predictor's.
    naive = ms.naive_bar(config["deciding_metric"],
                         raw_labels(fn_args.eval_files, plan, classes, keep_unknown=True),
                         raw_labels(fn_args.train_files, plan, classes), classes, seed)
    bar = config.get("threshold")
    selection = ms.select(
        config["deciding_metric"], higher, measure, sample.labels,
        mc.predict(model, sample.features),
        None if linear is None else mc.predict(linear[0], sample.features),
        config.get("select", "simplest_adequate"), seed,
        unit=scale[1] if classes is None else 1.0,
        bar=naive.get("bar") if bar is None else bar)
    logging.info(CHOICE_MESSAGE, selection.line())
    if selection.chosen == "linear":
        (model, guard), used = linear, linear_hp
    evaluation = make_eval()
    metrics = model.evaluate(evaluation, return_dict=True, verbose=0)
    if classes is None:  # report errors in the label's own units
        std = scale[1]
        metrics = {k: v * (std * std if k == "loss" else std if k in ("rmse", "mae") else 1.0)
                   for k, v in metrics.items()}
    if checks["enabled"]:
        after = [
            lambda: mc.numerics(model, guard, sample, plan["problem_type"]),
            lambda: mc.reproducibility(build, used, lambda: prepare()[0], sample, seed,
                                       checks["reproducibility_tolerance"],
                                       checks["reproducibility_steps"],
                                       math.ceil(counts["train"] / hp["batch_size"])),
            lambda: importance(model, sample, measure, higher, checks["importance_repeats"],
                                  seed, config["deciding_metric"],
                                  checks["importance_correlation"], ordinal={
                                      n for n, s in model_features(plan).items()
                                      if s["kind"] == BUCKETIZE},
                                  material=checks["importance_material"]),
            lambda: ms.baseline_check(selection),
        ]
        for check in after:
            results.append(check())
            logging.info(CHECK_MESSAGE, results[-1]["check"], results[-1]["summary"])
    signatures = _signatures(model, plan, transform_output, classes, scale)
    model.save(fn_args.serving_model_dir, save_format="tf", signatures=signatures)
    set_method_names(fn_args.serving_model_dir)
    write_warmup_requests(fn_args.serving_model_dir, fn_args.eval_files, plan["label"],
                          config["model_name"])
    record = write_build_record(fn_args, config, counts, metrics, classes, used, scale,
                                selection=selection.record(), naive=naive)
    if checks["enabled"]:
        from tandem.components.explain import explain
        from tandem.schemas import load_schema

        loaded = tf.saved_model.load(fn_args.serving_model_dir)
        schema = load_schema(fn_args.schema_path) if fn_args.schema_path.endswith(".pbtxt") \
            else transform_output.raw_metadata.schema
        names = {f.name for f in schema.feature}
        exported = [
            lambda: exported_checks.export_skew(loaded, model, transform_output, sample.raw,
                                   fn_args.eval_files, plan["problem_type"], scale, checks["export_tolerance"]),
            lambda: exported_checks.feature_code(loaded, transform_output, plan, sample.raw[0]),
            lambda: exported_checks.privacy(loaded, plan, sample.raw, checks["private_features"], names,
                               plan["problem_type"]),
            lambda: exported_checks.feature_rules(schema, plan),
            lambda: exported_checks.explained(fn_args.serving_model_dir, sample.raw[0],
                                 trace=lambda raw: explain(fn_args.serving_model_dir, raw,
                                                           loaded, record)),
        ]
        for check in exported:
            done = check()
            if done is not None:
                results.append(done)
                logging.info(CHECK_MESSAGE, done["check"], done["summary"])
        record["checks"] = results
        build_record.write(fn_args.serving_model_dir, record)


CHECK_MESSAGE = "Trainer check %s: %s"  # the runner prints these as progress lines
CHOICE_MESSAGE = "Trainer chose %s"
