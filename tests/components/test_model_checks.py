"""The Trainer's model checks on small Keras models with a known truth: a feature of pure
noise is listed, a constant model loses to the linear baseline, NaNs fail, the same seed
reproduces and a different data order does not, and the schema rules name what breaks them."""

import numpy as np
import pytest
import tensorflow as tf
from tensorflow_metadata.proto.v0 import schema_pb2

from components import model_checks as mc

N = 6000


def _data(seed: int, interaction: bool = False):
    rng = np.random.default_rng(seed)
    x = {"signal": rng.normal(size=N).astype(np.float32),
         "other": rng.normal(size=N).astype(np.float32),
         "noise": rng.normal(size=N).astype(np.float32)}
    logit = 2.0 * x["signal"] + 0.5 * x["other"]
    if interaction:  # what a linear model cannot express
        logit = 3.0 * x["signal"] * x["other"]
    y = (rng.random(N) < 1 / (1 + np.exp(-logit))).astype(np.float32)
    return x, y


def _build(hp):
    inputs = {n: tf.keras.Input(shape=(), name=n, dtype=tf.float32)
              for n in ("signal", "other", "noise")}
    x = tf.keras.layers.Concatenate()([tf.keras.layers.Reshape((1,))(v) for v in inputs.values()])
    for width in hp["hidden_units"]:
        x = tf.keras.layers.Dense(width, activation="relu")(x)
    out = tf.keras.layers.Reshape(())(tf.keras.layers.Dense(1, activation="sigmoid")(x))
    model = tf.keras.Model(inputs, out)
    model.compile(tf.keras.optimizers.Adam(hp["learning_rate"]), "binary_crossentropy")
    return model


def _train(x, y, seed=0, shuffle_seed=0):
    return (tf.data.Dataset.from_tensor_slices((x, y)).repeat()
            .shuffle(1000, seed=shuffle_seed).batch(128))


HP = {"hidden_units": [16], "learning_rate": 0.01}


@pytest.fixture(scope="module")
def fitted():
    x, y = _data(0)
    tf.keras.utils.set_random_seed(1)
    model = _build(HP)
    model.fit(_train(x, y), steps_per_epoch=150, epochs=1, verbose=0)
    test_x, test_y = _data(1)
    return model, mc.Sample(test_x, test_y, [])


def test_permutation_importance_lists_the_feature_of_pure_noise(fitted):
    model, sample = fitted
    found = mc.importance(model, sample, mc.auc, True, repeats=3, min_drop=0.005, seed=0)
    assert found["not_beneficial"] == ["noise"] and not found["passed"]
    assert found["features"]["signal"]["drop"] > found["features"]["other"]["drop"] > 0.005
    assert "noise" in found["summary"]


def test_a_constant_model_loses_to_the_linear_baseline(fitted):
    _, sample = fitted
    x, y = _data(0)
    inputs = {n: tf.keras.Input(shape=(), name=n) for n in ("signal", "other", "noise")}
    constant = tf.keras.Model(inputs, tf.keras.layers.Lambda(
        lambda t: 0.0 * t + 0.5)(inputs["signal"]))
    linear = lambda: _build({**HP, "hidden_units": []})  # noqa: E731
    verdict = mc.baseline(linear, constant, _train(x, y), 150, sample, mc.auc, True,
                          min_gain=0.002, name="auc")
    assert not verdict["passed"] and verdict["gate"]
    assert verdict["gain"] < -0.2 and "a simpler model is as good" in verdict["summary"]


def test_a_model_that_learns_an_interaction_beats_the_linear_baseline():
    x, y = _data(0, interaction=True)
    tf.keras.utils.set_random_seed(2)
    deep = _build({**HP, "hidden_units": [32, 16]})
    deep.fit(_train(x, y), steps_per_epoch=400, epochs=1, verbose=0)
    test_x, test_y = _data(1, interaction=True)
    verdict = mc.baseline(lambda: _build({**HP, "hidden_units": []}), deep, _train(x, y), 150,
                          mc.Sample(test_x, test_y, []), mc.auc, True, 0.002, "auc")
    assert verdict["passed"] and verdict["gain"] > 0.1, verdict["summary"]


def test_nan_weights_and_a_nan_loss_fail_the_numerics_check(fitted):
    model, sample = fitted
    guard = mc.FiniteGuard()
    assert mc.numerics(model, guard, sample, "binary_classification")["passed"]
    broken = _build(HP)
    broken.set_weights([np.full_like(w, np.nan) for w in model.get_weights()])
    found = mc.numerics(broken, guard, sample, "binary_classification")
    assert not found["passed"] and found["failed"] == ["weights", "outputs"]
    # A NaN label makes a NaN loss: the guard stops training at the first such batch.
    x, y = _data(0)
    y[:] = np.nan
    tf.keras.utils.set_random_seed(0)
    nan_model = _build(HP)
    guard = mc.FiniteGuard()
    nan_model.fit(_train(x, y), steps_per_epoch=50, epochs=1, verbose=0, callbacks=[guard])
    assert guard.bad is not None and guard.batches == 1
    assert mc.numerics(nan_model, guard, sample, "binary_classification")["failed"][0] == "loss"


def test_the_same_seed_reproduces_and_another_data_order_does_not(fitted):
    _, sample = fitted
    x, y = _data(0)

    def first_training(shuffle_seed):
        tf.keras.utils.set_random_seed(5)
        snapshot = mc.WeightSnapshot(20)
        _build(HP).fit(_train(x, y, shuffle_seed=0), steps_per_epoch=40, epochs=1, verbose=0,
                       callbacks=[snapshot])
        return snapshot

    same = mc.reproducibility(_build, HP, first_training(0), lambda: _train(x, y), sample,
                              seed=5, tolerance=1e-4)
    assert same["passed"] and same["max_abs_diff"] <= 1e-4 and same["steps"] == 20
    other = mc.reproducibility(_build, HP, first_training(0),
                               lambda: _train(x, y, shuffle_seed=9), sample, seed=5,
                               tolerance=1e-4)
    assert not other["passed"] and other["max_abs_diff"] > 1e-3


def test_trials_start_from_the_configured_hyperparameters_and_are_seeded():
    hp = {"learning_rate": 0.01, "hidden_units": [64, 32], "seed": 1}
    trials = mc.trial_grid(hp, 4, seed=3)
    assert trials[0] == hp and len(trials) == 4
    assert len({(t["learning_rate"], tuple(t["hidden_units"])) for t in trials}) == 4
    assert trials == mc.trial_grid(hp, 4, seed=3) and trials != mc.trial_grid(hp, 4, seed=4)


def test_a_model_spec_that_cannot_learn_fails_its_unit_test():
    x, y = _data(0)
    assert mc.model_spec(_build, HP, _train(x, y), 30)["passed"]
    frozen = {**HP, "learning_rate": 0.0}

    def build_frozen(hp):
        model = _build(hp)
        for layer in model.layers:
            layer.trainable = False
        model.compile(tf.keras.optimizers.Adam(0.01), "binary_crossentropy")
        return model

    found = mc.model_spec(build_frozen, frozen, _train(x, y), 30)
    assert not found["passed"] and found["loss_after"] > 0.75 * found["loss_before"]


def test_feature_rules_name_what_a_model_input_lacks():
    schema = schema_pb2.Schema()
    ok = schema.feature.add(name="a", type=schema_pb2.FLOAT)
    ok.presence.min_fraction = 1.0
    ok.float_domain.min = 0.0
    bare = schema.feature.add(name="b", type=schema_pb2.FLOAT)
    old = schema.feature.add(name="c", type=schema_pb2.INT, lifecycle_stage=schema_pb2.DEPRECATED)
    old.presence.min_fraction = 1.0
    old.int_domain.max = 3
    old.not_in_environment.append("SERVING")
    plan = {"features": {n: {"kind": "numeric", "dtype": "FLOAT"} for n in "abcd"}}
    found = mc.feature_rules(schema, plan)
    assert not found["passed"]
    assert found["failures"] == [
        "b: no presence rule", "b: no domain (values or range)",
        "c: lifecycle stage DEPRECATED",
        "c: not in the SERVING environment, yet a model input", "d: not in the schema"]
    assert bare.name == "b"
    plan["features"] = {"a": plan["features"]["a"]}
    assert mc.feature_rules(schema, plan)["passed"]
