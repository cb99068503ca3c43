"""The Trainer's model checks on small Keras models with a known truth: a feature of pure
noise is listed, two near copies of a real feature help as one group, a tiny sample at the
metric's ceiling cannot tell, a constant model loses to the linear model (which ships), NaNs
fail, the same seed reproduces and a different data order does not, tuning trials that tie keep the
configured hyperparameters, and the schema rules name what breaks them."""

import numpy as np
import pytest
import tensorflow as tf
from tensorflow_metadata.proto.v0 import schema_pb2

from tandem.components import exported_model_checks as exported
from tandem.components import importance as imp
from tandem.components import model_checks as mc
from tandem.components import sampling_error as se

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


def test_stacked_shuffles_score_exactly_as_one_call_per_shuffle(fitted, monkeypatch):
    """A group's shuffles go through the model stacked, many per call; one call per shuffle
    (SHUFFLE_ROWS below the sample's size) gives the same drops, noise and verdicts."""
    model, sample = fitted
    calls = []
    real = imp.predict
    monkeypatch.setattr(imp, "predict", lambda *a, **k: calls.append(1) or real(*a, **k))
    stacked = imp.importance(model, sample, se.auc, True, repeats=8, seed=3, name="auc")
    stacked_calls = len(calls)
    monkeypatch.setattr(imp, "SHUFFLE_ROWS", N - 1)
    calls.clear()
    one_by_one = imp.importance(model, sample, se.auc, True, repeats=8, seed=3, name="auc")
    assert stacked_calls < len(calls) and len(calls) == 1 + 3 * 8  # the base, then each shuffle
    for found in (stacked, one_by_one):
        found.pop("seconds")
    assert stacked == one_by_one


def test_permutation_importance_lists_the_feature_of_pure_noise(fitted):
    model, sample = fitted
    found = imp.importance(model, sample, se.auc, True, repeats=8, seed=0, name="auc")
    assert found["not_beneficial"] == ["noise"] and not found["passed"]
    assert found["status"] == "failed" and found["cannot_tell"] == []
    other = found["features"]["other"]
    assert found["features"]["signal"]["drop"] > other["drop"] > other["noise"] > 0
    noise = found["features"]["noise"]
    assert noise["verdict"] == "does not help" and noise["drop"] <= noise["noise"]
    assert found["examples"] == N and 0 < found["metric_se"] < 0.01 and found["repeats"] == 8
    assert [g["features"] for g in found["groups"]] == [["noise"], ["other"], ["signal"]]
    # Shown immaterial: within the noise, its mean drop's upper bound under 1% of the lift.
    assert found["material"] == pytest.approx(0.01 * (found["base"] - 0.5), abs=1e-6)
    assert noise["upper"] < found["material"]
    assert found["summary"].startswith(
        f"1 of 3 features do not help (drop within the shuffle noise, its upper bound under "
        f"{found['material']:.4f}: 1% of the lift over chance; n={N}, auc ")
    assert found["summary"].endswith(
        f"noise ({noise['drop']:+.4f} vs noise {noise['noise']:.4f})")


class _Logit:
    """A logistic model in numpy (fast enough to judge forty samples): it has learned
    spurious weights for any input not in the truth."""

    def __init__(self, weights: dict[str, float]):
        self.weights = weights

    def __call__(self, features, training=False):
        z = sum(w * features[k] for k, w in self.weights.items())
        return 1 / (1 + np.exp(-z))


def test_a_noise_feature_is_not_called_helpful_however_large_its_spurious_weight():
    """Forty eval samples, one model: `noise` carries nothing about the label yet the model
    weighs it 0.3 (a spurious fit), `weak` is real but small. Judged against the noise its
    own shuffles measure, the noise input helps about 2.5% of the time (one sided, 97.5%)
    and the weak one almost always; a fixed bar on the mean drop (0.0002 by two standard
    errors of the mean, the rule this replaced) called the noise helpful in about a third
    of the samples."""
    model = _Logit({"signal": 1.0, "weak": 0.15, "noise": 0.3})
    verdicts = {"weak": [], "noise": []}
    noise_drops = []
    for seed in range(40):
        sample = _sample({"signal": 1.0, "weak": 0.15, "noise": 0.0}, 4000, seed=seed)
        found = imp.importance(model, sample, se.auc, True, repeats=20, seed=seed, name="auc")
        for name in verdicts:
            verdicts[name].append(found["features"][name]["verdict"])
        noise_drops.append(found["features"]["noise"]["drop"])
    assert verdicts["noise"].count("helps") <= 3, verdicts["noise"]
    assert verdicts["weak"].count("helps") >= 36, verdicts["weak"]
    # A fixed threshold would have had to sit above these to keep the noise out.
    assert sum(d > 0.0002 for d in noise_drops) >= 10, noise_drops


def _logistic(weights: dict[str, float]):
    """A logistic model with the given weights: the truth, known."""
    inputs = {n: tf.keras.Input(shape=(), name=n, dtype=tf.float32) for n in weights}
    x = tf.keras.layers.Concatenate()([tf.keras.layers.Reshape((1,))(v) for v in inputs.values()])
    dense = tf.keras.layers.Dense(1, activation="sigmoid")
    model = tf.keras.Model(inputs, tf.keras.layers.Reshape(())(dense(x)))
    dense.set_weights([np.array([[w] for w in weights.values()], np.float32),
                       np.zeros(1, np.float32)])
    return model


def _sample(weights: dict[str, float], n: int, seed: int, copies: int = 0) -> mc.Sample:
    """n examples labelled by the logistic truth `weights` on independent normal features;
    `copies` > 0 makes copy_a and copy_b near copies (r about 0.98) of `signal`, which is
    then no model input itself."""
    rng = np.random.default_rng(seed)
    x = {k: rng.normal(size=n) for k in weights}
    y = (rng.random(n) < 1 / (1 + np.exp(-sum(w * x[k] for k, w in weights.items()))))
    if copies:
        signal = x.pop("signal")
        x.update({c: signal + 0.15 * rng.normal(size=n) for c in ("copy_a", "copy_b")})
    return mc.Sample({k: v.astype(np.float32) for k, v in x.items()}, y.astype(np.float32), [])


def test_two_near_copies_of_a_real_feature_help_as_one_group():
    # The model spreads the signal's weight over its two copies, as a regularized fit does:
    # shuffled alone, each copy leaves the other carrying most of the signal, and shows a
    # quarter of what the two carry.
    sample = _sample({"signal": 0.4, "other": 2.0, "noise": 0.0}, N, seed=0, copies=2)
    model = _logistic({"copy_a": 0.2, "copy_b": 0.2, "other": 2.0, "noise": 0.0})
    alone = imp.importance(model, sample, se.auc, True, repeats=20, seed=0,
                          name="auc", correlation=1.0)  # only exact copies would group
    assert [g["features"] for g in alone["groups"]] == [["copy_a"], ["copy_b"], ["noise"],
                                                        ["other"]]
    found = imp.importance(model, sample, se.auc, True, repeats=20, seed=0,
                          name="auc")
    assert found["not_beneficial"] == ["noise"] and found["status"] == "failed"
    pair = found["groups"][0]
    assert pair["features"] == ["copy_a", "copy_b"] and pair["verdict"] == "helps"
    assert pair["drop"] > 3 * max(alone["features"]["copy_a"]["drop"],
                                  alone["features"]["copy_b"]["drop"])
    assert found["features"]["copy_a"] == found["features"]["copy_b"]
    assert found["features"]["copy_a"]["group"] == "copy_a+copy_b"
    assert "judged together (|r| >= 0.8): copy_a+copy_b" in found["summary"]


def test_a_tiny_sample_at_the_ceiling_cannot_tell_what_does_not_help():
    truth = {"signal": 12.0, "other": 0.5, "noise": 0.0}
    model = _logistic(truth)
    # 193 examples at AUC 0.99: the weak real `other` shows no drop on this sample.
    tiny = imp.importance(model, _sample(truth, 193, seed=1), se.auc, True, repeats=8,
                         seed=0, name="auc")
    assert tiny["status"] == "cannot tell" and tiny["passed"]
    assert tiny["cannot_tell"] == ["noise", "other"] and tiny["not_beneficial"] == []
    assert tiny["features"]["signal"]["verdict"] == "helps"
    assert tiny["summary"].startswith("cannot tell (n=193, auc 0.99")
    assert "reaches the ceiling" in tiny["summary"] and tiny["examples"] == 193
    assert 0.99 + 2 * tiny["metric_se"] >= 1.0
    # The same model on 6,000 examples: `other` helps, and the noise is listed.
    large = imp.importance(model, _sample(truth, N, seed=1), se.auc, True, repeats=8,
                          seed=0, name="auc")
    assert large["status"] == "failed" and large["not_beneficial"] == ["noise"]
    assert large["features"]["other"]["verdict"] == "helps"


def test_a_real_input_whose_noise_could_hide_a_material_drop_is_not_called_useless():
    """Regression on tips-like labels: a few huge ones dominate each shuffle's RMSE, so a
    weak real input's drop stays inside the noise on 800 examples, and the shuffles scatter
    so widely that the mean drop's upper bound still reaches 1% of the lift over chance: the
    check cannot tell, where the noise alone would have called it useless. On 50 times the
    examples the same input helps, and the input of pure noise (weighted 0.1 by the model, a
    spurious fit) is shown useless: its upper bound is under the material share."""
    def rmse(p, y):
        return float(np.sqrt(np.mean((p - y) ** 2)))

    class Linear:
        def __call__(self, features, training=False):
            return 3.0 * features["strong"] + 0.5 * features["weak"] + 0.1 * features["noise"]

    def sample(n, seed):
        rng = np.random.default_rng(seed)
        x = {k: rng.normal(size=n).astype(np.float32) for k in ("strong", "weak", "noise")}
        tail = np.where(rng.random(n) < 0.03, rng.exponential(12.0, n), 0.0)
        y = 3.0 * x["strong"] + 0.5 * x["weak"] + rng.normal(scale=0.5, size=n) + tail
        return mc.Sample(x, y.astype(np.float32), [])

    small = imp.importance(Linear(), sample(800, 5), rmse, False, repeats=20, seed=0,
                          name="rmse")
    weak = small["features"]["weak"]
    assert weak["verdict"] == "cannot tell", small["summary"]
    assert weak["drop"] <= weak["noise"] and weak["upper"] >= small["material"]
    assert "weak" in small["cannot_tell"] and "weak" not in small["not_beneficial"]
    assert f"weak ({weak['drop']:+.4f} vs noise {weak['noise']:.4f})" in small["summary"]
    large = imp.importance(Linear(), sample(40_000, 5), rmse, False, repeats=20, seed=0,
                          name="rmse")
    assert large["features"]["weak"]["verdict"] == "helps", large["summary"]
    noise = large["features"]["noise"]
    assert large["not_beneficial"] == ["noise"] and large["status"] == "failed"
    assert noise["upper"] < large["material"]


def _linear(x, y):
    tf.keras.utils.set_random_seed(2)
    linear = _build({**HP, "hidden_units": []})
    linear.fit(_train(x, y), steps_per_epoch=150, epochs=1, verbose=0)
    return linear


def test_a_constant_model_loses_to_the_linear_model_which_is_shipped(fitted):
    from tandem.components import model_selection as ms

    _, sample = fitted
    x, y = _data(0)
    inputs = {n: tf.keras.Input(shape=(), name=n) for n in ("signal", "other", "noise")}
    constant = tf.keras.Model(inputs, tf.keras.layers.Lambda(
        lambda t: 0.0 * t + 0.5)(inputs["signal"]))
    chosen = ms.select("auc", True, se.auc, sample.labels, mc.predict(constant, sample.features),
                       mc.predict(_linear(x, y), sample.features), "simplest_adequate", seed=0)
    assert chosen.chosen == "linear" and chosen.gain < -0.2
    assert ms.baseline_check(chosen)["passed"]  # the simpler, better model ships
    kept = ms.select("auc", True, se.auc, sample.labels, mc.predict(constant, sample.features),
                     mc.predict(_linear(x, y), sample.features), "configured", seed=0)
    verdict = ms.baseline_check(kept)
    assert not verdict["passed"] and "a simpler model is better" in verdict["summary"]


def test_a_model_that_learns_an_interaction_beats_the_linear_model():
    from tandem.components import model_selection as ms

    x, y = _data(0, interaction=True)
    tf.keras.utils.set_random_seed(2)
    deep = _build({**HP, "hidden_units": [32, 16]})
    deep.fit(_train(x, y), steps_per_epoch=400, epochs=1, verbose=0)
    test_x, test_y = _data(1, interaction=True)
    chosen = ms.select("auc", True, se.auc, test_y, mc.predict(deep, test_x),
                       mc.predict(_linear(x, y), test_x), "simplest_adequate", seed=0)
    assert chosen.chosen == "configured" and chosen.gain > 0.1 > chosen.margin, chosen.line()


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
    same = mc.reproducibility(_build, HP, lambda: _train(x, y), sample, seed=5,
                              tolerance=1e-4, min_steps=20, epoch_steps=40)
    assert same["passed"] and same["max_abs_diff"] <= 1e-4 and same["steps"] == 40
    orders = iter([0, 9])  # the second training reads the data in another order
    other = mc.reproducibility(_build, HP, lambda: _train(x, y, shuffle_seed=next(orders)),
                               sample, seed=5, tolerance=1e-4, min_steps=20, epoch_steps=40)
    assert not other["passed"] and other["max_abs_diff"] > 1e-3


@pytest.mark.slow
def test_reproducibility_trains_its_own_steps_when_an_epoch_is_one_step(fitted):
    _, sample = fitted
    x, y = _data(0)
    tiny = {k: v[:128] for k, v in x.items()}, y[:128]  # one batch: an epoch is one step
    built = []

    def build(hp):
        built.append(_build(hp))
        return built[-1]

    found = mc.reproducibility(build, HP, lambda: _train(*tiny), sample, seed=5,
                               tolerance=1e-4, min_steps=100, epoch_steps=1)
    assert found["passed"] and found["steps"] == 100 and found["examples"] == N
    assert [int(m.optimizer.iterations) for m in built] == [100, 100]
    assert found["summary"].startswith("two trainings of 100 steps (100 passes over")
    assert f"n={N} eval examples" in found["summary"]
    # A large dataset's epoch counts for at most REPRODUCIBILITY_MAX_STEPS steps.
    assert mc.reproducibility(lambda hp: _build({**hp, "learning_rate": 0.0}), HP,
                              lambda: _train(*tiny), sample, seed=5, tolerance=1e-4,
                              min_steps=1, epoch_steps=10**6)["steps"] == \
        mc.REPRODUCIBILITY_MAX_STEPS


def test_trials_start_from_the_configured_hyperparameters_and_are_seeded():
    hp = {"learning_rate": 0.01, "hidden_units": [64, 32], "seed": 1}
    trials = mc.trial_grid(hp, 4, seed=3)
    assert trials[0] == hp and len(trials) == 4
    assert len({(t["learning_rate"], tuple(t["hidden_units"])) for t in trials}) == 4
    assert trials == mc.trial_grid(hp, 4, seed=3) and trials != mc.trial_grid(hp, 4, seed=4)


def _small(seed: int, n: int, weight: float = 3.0):
    """n examples whose label follows `signal` with this weight (0: labels of pure noise)."""
    rng = np.random.default_rng(seed)
    x = {k: rng.normal(size=n).astype(np.float32) for k in ("signal", "other", "noise")}
    return x, (rng.random(n) < 1 / (1 + np.exp(-weight * x["signal"]))).astype(np.float32)


def test_tuning_trials_that_tie_keep_the_configured_hyperparameters():
    x, y = _small(0, 300)
    test_x, test_y = _small(1, 193)
    train = tf.data.Dataset.from_tensor_slices((x, y)).repeat().shuffle(300, seed=0).batch(32)
    hp = {**HP, "seed": 2}
    # 300 rows are 10 batches: tuning_steps 150 would be 15 passes, a trial trains 3.
    chosen, found = mc.tuning(_build, hp, train, mc.Sample(test_x, test_y, []), se.auc, True,
                              trials=4, steps=150, seed=2, name="auc", epoch_steps=10)
    assert found["steps"] == 30 and len(found["trials"]) == 4 and found["passed"]
    values = [t["value"] for t in found["trials"]]
    margin = 2 * found["metric_se"]
    assert max(values) > values[0] and max(abs(v - values[0]) for v in values) <= margin
    assert chosen == hp and found["kept_configured"] and found["examples"] == 193
    assert found["chosen"] == {"learning_rate": 0.01, "hidden_units": [16]}
    assert found["summary"].startswith(f"all 4 trials of 30 steps tie within ±{margin:.4f}")
    assert found["summary"].endswith("(n=193): configured kept")


@pytest.mark.slow
def test_a_search_on_labels_of_pure_noise_finds_nothing_to_tune_and_says_so():
    """Labels independent of every input: each trial scores an AUC at chance, within the
    sampling error of 0.5 at n=1,000, so the search found no setting worth keeping. M3 fails,
    and the summary says why, with n and the margin; a search whose every trial diverges
    (NaN labels) fails too, naming that."""
    x, y = _small(0, 300, weight=0.0)
    test_x, test_y = _small(1, 1000, weight=0.0)
    train = tf.data.Dataset.from_tensor_slices((x, y)).repeat().shuffle(300, seed=0).batch(32)
    hp = {**HP, "seed": 2}
    sample = mc.Sample(test_x, test_y, [])
    chosen, found = mc.tuning(_build, hp, train, sample, se.auc, True, trials=4, steps=150,
                              seed=2, name="auc", epoch_steps=10)
    assert not found["passed"] and found["check"] == "tuning" and not found["gate"]
    margin = 2 * found["metric_se"]
    values = [t["value"] for t in found["trials"]]
    assert found["chance"] == 0.5 and found["examples"] == 1000 and 0.02 < margin < 0.1
    assert all(abs(v - 0.5) <= margin for v in values), values
    assert chosen == hp and found["kept_configured"]
    assert found["summary"].startswith(
        f"4 trials of 30 steps: no trial beats chance (auc 0.5000) by more than ±{margin:.4f} "
        "(n=1000; best learning_rate")
    assert found["summary"].endswith("the search found nothing to tune; configured kept")
    # The same search on labels that follow `signal` finds plenty.
    x, y = _small(0, 300)
    signal = tf.data.Dataset.from_tensor_slices((x, y)).repeat().shuffle(300, seed=0).batch(32)
    assert mc.tuning(_build, hp, signal, mc.Sample(*_small(1, 1000), []), se.auc, True,
                     trials=4, steps=150, seed=2, name="auc", epoch_steps=10)[1]["passed"]
    y = np.full_like(y, np.nan)
    diverged = tf.data.Dataset.from_tensor_slices((x, y)).repeat().batch(32)
    _, nothing = mc.tuning(_build, hp, diverged, sample, se.auc, True, trials=4, steps=150,
                           seed=2, name="auc", epoch_steps=10)
    assert not nothing["passed"] and [t["value"] for t in nothing["trials"]] == [None] * 4
    assert nothing["summary"] == ("4 trials of 30 steps: no trial gave a finite auc (n=1000): "
                                  "the search found nothing")


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
    from tandem.schemas.propose import OPEN_VOCABULARY

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
    found = exported.feature_rules(schema, plan)
    assert not found["passed"]
    assert found["failures"] == [
        "b: no presence rule", "b: no domain (values or range)",
        "c: lifecycle stage DEPRECATED",
        "c: not in the SERVING environment, yet a model input", "d: not in the schema"]
    assert bare.name == "b"
    plan["features"] = {"a": plan["features"]["a"]}
    assert exported.feature_rules(schema, plan)["passed"]
    # A string the schema marks an open vocabulary, read through a vocabulary with an
    # out-of-vocabulary bucket, needs no closed domain (a date has no list of values); without
    # the mark (a domain deleted), without the bucket, or as an identifier, it does.
    date = schema.feature.add(name="date", type=schema_pb2.BYTES)
    date.presence.min_fraction = 1.0
    plan["features"]["date"] = {"kind": "categorical", "dtype": "BYTES", "num_oov_buckets": 1}
    found = exported.feature_rules(schema, plan)
    assert found["failures"] == ["date: no domain (values or range)"]
    date.annotation.tag.append(OPEN_VOCABULARY)
    found = exported.feature_rules(schema, plan)
    assert found["passed"] and found["open_vocabularies"] == ["date"]
    assert "domain (open vocabularies, unseen values to an out-of-vocabulary bucket: date)" \
        in found["summary"]
    plan["features"]["date"]["num_oov_buckets"] = 0
    found = exported.feature_rules(schema, plan)
    assert found["failures"] == ["date: no domain (values or range)"]
    assert found["open_vocabularies"] == []
    plan["features"]["date"]["num_oov_buckets"] = 1
    date.annotation.tag.append("identifier")
    assert exported.feature_rules(schema, plan)["failures"] == [
        "date: no domain (values or range)"]


def test_explain_judges_a_regression_answer_relative_to_its_size():
    def trace(score, served):
        return lambda raw: {"raw": {"a": 1}, "transformed": {"a": 0.5}, "score": score,
                            "served": served}

    # float32 rounding of a price of about 500,000: 0.006 in its own units, no mismatch.
    scale = (404_500.0, 103_400.0)
    found = exported.explained("", b"", trace(495617.462632, 495617.46875), problem="regression",
                               scale=scale)
    assert found["passed"] and found["max_abs_diff"] < 2e-8, found
    assert "relative to max(the label's standard deviation" in found["summary"]
    # A score off by a thousandth of the answer is a mismatch at any size.
    found = exported.explained("", b"", trace(495617.0, 495617.0 * 1.001), problem="regression",
                               scale=scale)
    assert not found["passed"] and found["max_abs_diff"] == pytest.approx(1e-3, rel=1e-3)
    # A classifier's score is a probability: judged in its own units.
    assert not exported.explained("", b"", trace(0.5, 0.5 + 2e-5))["passed"]
    assert exported.explained("", b"", trace(0.5, 0.5 + 5e-6))["passed"]


def _examples(n: int) -> list[bytes]:
    from tensorflow.core.example import example_pb2

    out = []
    for i in range(n):
        e = example_pb2.Example()
        e.features.feature["x"].float_list.value.append(i / n - 0.5)
        e.features.feature["user_id"].bytes_list.value.append(f"u{i}".encode())
        out.append(e.SerializeToString())
    return out


def _export(path, reads_user: bool):
    """A SavedModel with a tandem serving_default (serialized examples in, probabilities
    out) that reads `x`, and, when `reads_user`, the hashed `user_id` too, as an embedding of
    the id would."""
    spec = {"x": tf.io.FixedLenFeature([], tf.float32),
            "user_id": tf.io.FixedLenFeature([], tf.string)}

    class Served(tf.Module):
        @tf.function(input_signature=[tf.TensorSpec([None], tf.string, name="examples")])
        def serve(self, examples):
            parsed = tf.io.parse_example(examples, spec)
            z = parsed["x"]
            if reads_user:
                bucket = tf.strings.to_hash_bucket_fast(parsed["user_id"], 7)
                z += 0.3 * tf.cast(bucket, tf.float32)
            return {"probabilities": tf.sigmoid(z)}

    served = Served()
    tf.saved_model.save(served, str(path), signatures={"serving_default": served.serve})
    return tf.saved_model.load(str(path))


def _plan(user_kind: str) -> dict:
    return {"features": {"x": {"kind": "numeric", "dtype": "FLOAT"},
                         "user_id": {"kind": user_kind, "dtype": "BYTES"}}}


def test_a_model_that_reads_the_private_user_id_fails_the_privacy_check(tmp_path):
    raw = _examples(50)
    names = {"x", "user_id"}
    reads = _export(tmp_path / "reads", reads_user=True)
    found = exported.privacy(reads, _plan("categorical"), raw, ["user_id"], names,
                       "binary_classification")
    assert not found["passed"] and found["gate"] and found["check"] == "privacy"
    assert found["model_inputs"] == ["user_id"] and found["examples"] == 50
    assert 0.01 < found["max_abs_change"] < 1
    assert found["summary"] == (
        "private features user_id (changed in n=50 eval examples): model inputs: user_id; "
        f"changing them moves predictions by up to {found['max_abs_change']:.2e}")
    # The plan says user_id is skipped, yet the served graph still reads it (a cross or a
    # lookup built from the id): only changing it shows the leak.
    hidden = exported.privacy(reads, _plan("skip"), raw, ["user_id"], names, "binary_classification")
    assert not hidden["passed"] and hidden["model_inputs"] == []
    assert hidden["summary"].endswith(": changing them moves predictions by up to "
                                      f"{hidden['max_abs_change']:.2e}")
    # A model that never reads it passes; a private feature the schema lacks does not.
    clean = _export(tmp_path / "clean", reads_user=False)
    held = exported.privacy(clean, _plan("skip"), raw, ["user_id"], names, "binary_classification")
    assert held["passed"] and held["max_abs_change"] == 0.0
    assert held["summary"].endswith("(changed in n=50 eval examples): not model inputs, no "
                                    "prediction moved")
    typo = exported.privacy(clean, _plan("skip"), raw, ["userid"], names, "binary_classification")
    assert not typo["passed"] and typo["summary"].endswith(": not in the schema: userid")


@pytest.mark.slow
def test_a_model_handed_back_retrains_exactly_as_a_new_build(fitted):
    """The Trainer's models (trainer_model.Models): a model a check handed back is retrained
    from the weights a new build from the same seed has, with a fresh optimizer at the new
    learning rate, and predicts exactly what that new build would after the same training;
    a model in use is never handed out twice, nor one of another architecture."""
    from tandem.components.trainer_model import Models

    _, sample = fitted
    x, y = _data(0)

    def trained(model, seed):
        model.fit(_train(x, y, shuffle_seed=seed), steps_per_epoch=60, epochs=1, verbose=0)
        return mc.predict(model, sample.features)

    def seeded(make, h, seed=7):
        tf.keras.utils.set_random_seed(seed)
        return make(h)

    models = Models(_build)
    first = seeded(models, HP)
    a = trained(first, 0)
    models.release(first)
    again = seeded(models, HP)
    assert again is first and int(again.optimizer.iterations) == 0
    assert np.array_equal(trained(again, 0), a)
    models.release(again)
    faster = {**HP, "learning_rate": 0.05}
    reused = seeded(models, faster)
    assert reused is first
    b = trained(reused, 0)
    assert np.array_equal(b, trained(seeded(_build, faster), 0)) and not np.array_equal(a, b)
    assert seeded(models, HP) is not reused  # still in use: a new build
    models.release(reused)
    assert seeded(models, {**HP, "hidden_units": [8]}) is not reused

    # The checks hand their models back: the reproducibility check's two trainings share
    # one model, whose steps are already traced for the next training of that architecture.
    models = Models(_build)
    same = mc.reproducibility(models, HP, lambda: _train(x, y), sample, seed=5,
                              tolerance=1e-4, min_steps=20, epoch_steps=40)
    assert same["passed"] and same["max_abs_diff"] == 0.0
    assert seeded(models, HP).train_function is not None
