"""Trainer, the model: its input datasets, the wide-and-deep Keras model, its training and
the choice between it and a linear model on the same features.

Every training of a run (the tuning trials, the training, the linear baseline, the
reproducibility check) starts from one `Training`, so they share inputs, schedule and seed.

One module past 400 lines because the inputs, the model and its fitting are one `Training`'s
state, and the choice between the models compares two of its fits on its own eval split.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import math
from collections.abc import Callable
from typing import Any

import numpy as np
import tensorflow as tf
from absl import logging
from tfx_bsl.public import tfxio

from tandem.components.features import BUCKETIZE, CATEGORICAL, NUMERIC, model_features
from tandem.components.transform import LABEL_MEAN, LABEL_STD, LABEL_VOCABULARY
from tandem.schemas.contracts import class_names
from tandem.schemas.files import tfrecord_compression

MIN_STEPS_PER_EPOCH = 30


def _keras_internals_unconverted() -> None:
    """Keep AutoGraph out of Keras' own code, as TensorFlow does for the `keras` package.

    TensorFlow's AutoGraph rules leave `keras` unconverted but not `tf_keras`, the Keras 2
    that TF Transform needs; so every trace of a model (each training, evaluation and
    prediction function, each tuning trial) rewrote Keras' engine source, its functional
    graph walk and every layer's call, and that was most of the Trainer's time (py-spy on
    the listening pipeline: 65 s of its 104 s in AutoGraph conversion). Keras 2 was written
    to run unconverted; a function tf.function wraps directly (Keras' train, test and predict
    functions, a model's signatures) is still converted. Newer TensorFlow releases carry the
    same rule; it is added once."""
    from tensorflow.python.autograph.core import config

    rule = config.DoNotConvert("tf_keras")
    if str(rule) not in map(str, config.CONVERSION_RULES):
        config.CONVERSION_RULES = (rule, *config.CONVERSION_RULES)


_keras_internals_unconverted()


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

    # Traced as written: no Python branch depends on a tensor, and AutoGraph's rewrite of the
    # Transform layer's call was a second of every dataset's construction.
    @tf.autograph.experimental.do_not_convert
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


# A split goes through the Transform graph once and is kept in memory for every training of
# the run when it has at most IN_MEMORY_EXAMPLES examples and IN_MEMORY_VALUES transformed
# values (examples x model inputs, 4 or 8 bytes each): a small split is otherwise transformed
# again on every pass (ten epochs of each of the run's trainings, and an evaluation after each
# epoch), and that was most of a step. The training input shuffles the examples' positions
# in a buffer of the whole split, about 200 bytes per example, refilled on each pass.
IN_MEMORY_EXAMPLES = 1_000_000
IN_MEMORY_VALUES = 50_000_000
MATERIALIZE_BATCH = 4096


def _materialized(dataset) -> tuple[dict[str, tf.Tensor], tf.Tensor] | None:
    """A one-pass dataset of dense (features, label) batches as whole tensors, or None when a
    feature is not dense (it stays streamed) or there is no example."""
    features_spec, _ = dataset.element_spec
    if not all(isinstance(spec, tf.TensorSpec) for spec in features_spec.values()):
        return None
    parts = list(dataset.as_numpy_iterator())
    if not parts or not sum(len(y) for _, y in parts):
        return None
    features = {}
    for name in features_spec:
        features[name] = tf.constant(np.concatenate([x.pop(name) for x, _ in parts]))
    return features, tf.constant(np.concatenate([y for _, y in parts]))


def _from_memory(split: tuple[dict[str, tf.Tensor], tf.Tensor], batch_size: int,
                 seed: int | None):
    """Batches of an in-memory split: in order once (seed None), or shuffled with `seed`,
    reshuffled on every pass, repeating."""
    features, labels = split
    if seed is None:
        return tf.data.Dataset.from_tensor_slices((features, labels)).batch(batch_size)
    n = int(labels.shape[0])

    def gather(index):
        return {name: tf.gather(x, index) for name, x in features.items()}, \
            tf.gather(labels, index)

    return (tf.data.Dataset.range(n).shuffle(n, seed=seed, reshuffle_each_iteration=True)
            .repeat().batch(batch_size).map(gather).prefetch(tf.data.AUTOTUNE))


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


class Models:
    """The run's Keras models, each architecture traced once. A training asks for a model of
    hyperparameters h and gets one with the weights a new build from the current seed has:
    a model of the same architecture (hidden units, crosses, embedding width) that a check
    handed back (`release`), its optimizer state reset and its learning rate set to h's,
    else the new build itself. Keras traces a model's train, test and predict steps on first
    use, about two seconds each time on two cores, and a run trains up to nine models of
    three or four architectures (the spec check, the tuning trials, the training, the
    linear model and the two reproducibility trainings)."""

    ARCHITECTURE = ("hidden_units", "crosses", "embedding_dim")

    def __init__(self, build: Callable[[dict[str, Any]], tf.keras.Model]):
        self._build = build
        self._idle: dict[str, list[tf.keras.Model]] = {}
        self._architecture: dict[int, str] = {}

    def __call__(self, h: dict[str, Any]) -> tf.keras.Model:
        key = json.dumps([h.get(k) for k in self.ARCHITECTURE])
        fresh = self._build(h)  # the seeded weights a new training starts from
        idle = self._idle.get(key)
        if not idle:
            self._architecture[id(fresh)] = key
            return fresh
        model = idle.pop()
        model.set_weights(fresh.get_weights())
        for variable in model.optimizer.variables:  # Adam's step count and moments
            variable.assign(tf.zeros_like(variable))
        model.optimizer.learning_rate.assign(h["learning_rate"])
        return model

    def release(self, model: tf.keras.Model) -> None:
        """`model` is no longer used by whoever asked for it: the next call may retrain it."""
        key = self._architecture.get(id(model))
        if key is not None and model not in self._idle.setdefault(key, []):
            self._idle[key].append(model)


CHOICE_MESSAGE = "Trainer chose %s"  # the runner prints these as progress lines


@dataclasses.dataclass(frozen=True)
class Training:
    """What every training of one run shares: its inputs, the Transform output, the label's
    classes (None for regression) or scale, the schedule and the seed. The tuning trials, the
    training, the linear baseline and the reproducibility check all start from `datasets()`."""

    fn_args: Any
    config: dict[str, Any]
    transform_output: Any
    counts: dict[str, int]
    classes: list[str] | None
    scale: tuple[float, float]
    steps_per_epoch: int
    epochs: int
    guarded: bool  # every training carries a FiniteGuard (the model checks are on)

    @property
    def plan(self) -> dict[str, Any]:
        return self.config["plan"]

    @property
    def hp(self) -> dict[str, Any]:
        """The configured hyperparameters."""
        return self.config["hyperparameters"]

    @property
    def seed(self) -> int:
        return self.hp["seed"]

    @property
    def deciding_metric(self) -> str:
        return self.config["deciding_metric"]

    def _in_memory(self, split: str):
        """The split through the Transform graph once, as tensors, when it is small enough
        (IN_MEMORY_EXAMPLES, IN_MEMORY_VALUES); else None."""
        n = self.counts[split]
        if n > IN_MEMORY_EXAMPLES or n * max(1, len(model_features(self.plan))) > IN_MEMORY_VALUES:
            return None
        return _materialized(self._streamed(split, MATERIALIZE_BATCH, epochs=1))

    def _streamed(self, split: str, batch_size: int, epochs: int | None):
        """The split through the Transform graph as it is read (`_dataset`)."""
        return _dataset(getattr(self.fn_args, f"{split}_files"), self.fn_args.data_accessor,
                        self.transform_output, self.plan, batch_size, self.seed, epochs=epochs,
                        classes=self.classes)

    @functools.cached_property
    def _train_split(self):
        return self._in_memory("train")

    @functools.cached_property
    def eval_dataset(self):
        """The eval split through the Transform graph, in file order (no shuffle): built once
        (in memory when small), and iterated afresh by each use."""
        split = self._in_memory("eval")
        if split is not None:
            return _from_memory(split, self.hp["batch_size"], seed=None)
        return self._streamed("eval", self.hp["batch_size"], epochs=1)

    def datasets(self):
        """The seeded start of a training: (train, eval) datasets; the training input
        shuffled with the run's seed, reshuffled on each pass, repeating."""
        in_memory = self._train_split  # made before the seed is set: it draws nothing
        tf.keras.utils.set_random_seed(self.seed)
        train = (_from_memory(in_memory, self.hp["batch_size"], self.seed)
                 if in_memory is not None else
                 self._streamed("train", self.hp["batch_size"], epochs=None))
        return train, self.eval_dataset

    @functools.cached_property
    def models(self) -> Models:
        """Every training's model, freshly seeded, each architecture traced once."""
        return Models(lambda h: build_model(self.plan, self.transform_output, h,
                                            len(self.classes) if self.classes else 1))

    def fit(self, h: dict[str, Any], log_epochs: bool) -> tuple[tf.keras.Model, Any]:
        """One seeded training of hyperparameters h, kept at its best epoch; with its
        FiniteGuard when guarded, else None."""
        from tandem.components.model_checks import FiniteGuard

        # The pipeline config fixed the deciding metric (accuracy for multi-class, as it
        # validates).
        monitor, mode = EARLY_STOPPING[self.deciding_metric]
        train, evaluation = self.datasets()
        model = self.models(h)
        callbacks = [tf.keras.callbacks.EarlyStopping(
            monitor=monitor, mode=mode, patience=self.hp["early_stopping_patience"],
            restore_best_weights=True,
        )] + ([EpochLog(self.epochs)] if log_epochs else [])
        guard = None
        if self.guarded:
            guard = FiniteGuard()
            callbacks += [guard]
        model.fit(train, steps_per_epoch=self.steps_per_epoch, epochs=self.epochs,
                  validation_data=evaluation, callbacks=callbacks, verbose=0)
        return model, guard


def start_training(fn_args, guarded: bool) -> Training:
    """The run's seed set, its examples counted, its schedule and its label read."""
    import tensorflow_transform as tft

    config = fn_args.custom_config
    plan, hp = config["plan"], config["hyperparameters"]
    tf.keras.utils.set_random_seed(hp["seed"])
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
    return Training(fn_args, config, transform_output, counts, classes, scale,
                    steps_per_epoch, epochs, guarded)


@dataclasses.dataclass(frozen=True)
class Chosen:
    """The model the run exports, the hyperparameters it trained with, why it was chosen
    (components/model_selection.py) and the Evaluator's naive bar."""

    model: tf.keras.Model
    guard: Any
    hyperparameters: dict[str, Any]
    selection: Any
    naive: dict[str, Any]


def train_and_select(training: Training, used: dict[str, Any], sample, measure,
                     higher: bool) -> Chosen:
    """Train the configured (or tuned) model and a linear one on the same features, and keep
    the simplest adequate: the configured one only when it beats the linear model beyond the
    sampling error."""
    from tandem.components import model_selection as ms
    from tandem.components.model_checks import predict

    config, hp, plan, classes = training.config, training.hp, training.plan, training.classes
    logging.info("training %d epochs x %d steps on %d examples (early stopping on %s)",
                 training.epochs, training.steps_per_epoch, training.counts["train"],
                 EARLY_STOPPING[training.deciding_metric][0])
    model, guard = training.fit(used, log_epochs=True)
    # The linear model trains at the larger of the configured and the tuned learning rate:
    # under-trained at a deep model's small rate, it would be no alternative.
    linear_hp = {**used, "hidden_units": [], "crosses": [],
                 "learning_rate": max(used["learning_rate"], hp["learning_rate"])}
    is_linear = not used["hidden_units"] and not used.get("crosses")
    linear = None if is_linear else training.fit(linear_hp, log_epochs=False)
    # The Evaluator's value bar: the configured threshold, else the naive predictor's.
    naive = ms.naive_bar(training.deciding_metric,
                         raw_labels(training.fn_args.eval_files, plan, classes,
                                    keep_unknown=True),
                         raw_labels(training.fn_args.train_files, plan, classes), classes,
                         training.seed)
    bar = config.get("threshold")
    selection = ms.select(
        training.deciding_metric, higher, measure, sample.labels,
        predict(model, sample.features),
        None if linear is None else predict(linear[0], sample.features),
        config.get("select", "simplest_adequate"), training.seed,
        unit=training.scale[1] if classes is None else 1.0,
        bar=naive.get("bar") if bar is None else bar)
    logging.info(CHOICE_MESSAGE, selection.line())
    if selection.chosen == "linear":
        training.models.release(model)
        (model, guard), used = linear, linear_hp
    elif linear is not None:
        training.models.release(linear[0])
    return Chosen(model, guard, used, selection, naive)


def evaluate(model: tf.keras.Model, training: Training) -> dict[str, float]:
    """The model's metrics on the eval split; for regression, errors in the label's own
    units."""
    metrics = model.evaluate(training.eval_dataset, return_dict=True, verbose=0)
    if training.classes is None:
        std = training.scale[1]
        metrics = {k: v * (std * std if k == "loss" else std if k in ("rmse", "mae") else 1.0)
                   for k, v in metrics.items()}
    return metrics
