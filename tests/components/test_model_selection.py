"""The simplest adequate model and the naive bar: which model is exported when, the margins
the choice rests on, and the Evaluator's default bar filled into TFMA's config."""

import math

import numpy as np
import pytest
import tensorflow_model_analysis as tfma

from tandem.components import model_selection as ms
from tandem.components import sampling_error as se
from tandem.components.evaluator import NoBar, apply_naive_bar, apply_tolerance


def _hanley_mcneil(a, positives, negatives):
    q1, q2 = a / (2 - a), 2 * a * a / (1 + a)
    return math.sqrt((a * (1 - a) + (positives - 1) * (q1 - a * a)
                      + (negatives - 1) * (q2 - a * a)) / (positives * negatives))


def _labels_and_scores(n, strength, seed):
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 2, n).astype(np.float32)
    return y, 1 / (1 + np.exp(-(strength * (2 * y - 1) + rng.normal(size=n))))


def test_the_configured_model_is_exported_only_when_better_beyond_the_error():
    y, strong = _labels_and_scores(400, 2.0, 0)
    _, weak = _labels_and_scores(400, 0.3, 0)
    auc = se.auc
    better = ms.select("auc", True, auc, y, strong, weak, "simplest_adequate", seed=0)
    assert better.chosen == "configured" and better.better
    assert "better beyond error" in better.line() and "(n=400)" in better.line()

    # Nearly the same scores: within the error, the linear model is exported.
    _, close = _labels_and_scores(400, 2.0, 0)
    tie = ms.select("auc", True, auc, y, strong, close + 1e-3 * np.sin(np.arange(400)),
                    "simplest_adequate", seed=0)
    assert tie.chosen == "linear" and not tie.better
    assert tie.line().startswith("linear: configured ") and "not better beyond error" in \
        tie.line()
    # The margin is Hanley-McNeil's at the linear model's AUC and the split's counts.
    positives = int(y.sum())
    assert tie.margin == pytest.approx(
        ms.Z * _hanley_mcneil(tie.linear, positives, 400 - positives), rel=1e-6)

    # Better, but not beyond the error: still the linear model.
    rng = np.random.default_rng(5)
    nudged = np.clip(weak + np.where(y > 0, 1, -1) * rng.uniform(0, 0.02, 400), 0, 1)
    inside = ms.select("auc", True, auc, y, nudged, weak, "simplest_adequate", seed=0)
    assert 0 < inside.gain < inside.margin and inside.chosen == "linear"

    # select: configured keeps the configured model, and says when the simpler one is better.
    worse = ms.select("auc", True, auc, y, weak, strong, "configured", seed=0)
    assert worse.chosen == "configured" and worse.simpler_better
    check = ms.baseline_check(worse)
    assert not check["passed"] and not check["gate"]
    assert check["summary"].endswith("a simpler model is better")
    assert ms.baseline_check(tie)["passed"]


def test_a_linear_model_that_misses_the_bar_is_not_an_adequate_simpler_model():
    def rmse(p, t):
        return float(np.sqrt(np.mean((p - t) ** 2)))

    rng = np.random.default_rng(4)
    y = rng.normal(size=300)
    configured = y + rng.normal(scale=0.9, size=300)
    linear = y + rng.normal(scale=1.0, size=300)
    # Within the error of each other (label units: x2)...
    tie = ms.select("rmse", False, rmse, y, configured, linear, "simplest_adequate", seed=0,
                    unit=2.0)
    assert tie.chosen == "linear" and not tie.better
    # ...but with a bar between them, only the configured model is adequate.
    bar = (tie.configured + tie.linear) / 2 * 2.0
    kept = ms.select("rmse", False, rmse, y, configured, linear, "simplest_adequate", seed=0,
                     unit=2.0, bar=bar)
    assert kept.chosen == "configured" and kept.missed_bar == bar
    assert kept.line().endswith(f"(not better beyond error, but the linear model misses the "
                                f"bar {bar:.4f} the configured one meets)")
    assert kept.record()["missed_bar"] == bar and ms.baseline_check(kept)["passed"]
    # Both meet a looser bar, or both miss a stricter one: the simpler model ships.
    for loose in (10.0, 0.1):
        assert ms.select("rmse", False, rmse, y, configured, linear, "simplest_adequate",
                         seed=0, unit=2.0, bar=loose).chosen == "linear"


def test_a_linear_configured_model_has_nothing_simpler_and_a_diverged_one_fails_closed():
    y, scores = _labels_and_scores(200, 1.0, 1)
    linear = ms.select("auc", True, se.auc, y, scores, None, "simplest_adequate", seed=0)
    assert linear.chosen == "configured" and "itself linear" in linear.line()
    nan = np.full(200, np.nan)
    broken = ms.select("rmse", False, lambda p, t: float(np.sqrt(np.mean((p - t) ** 2))), y, nan,
                       nan, "simplest_adequate", seed=0)
    check = ms.baseline_check(broken)
    assert not check["passed"] and check["gate"] and "nothing judged" in check["summary"]
    # A linear model that diverged is no alternative to a finite configured model.
    kept = ms.select("auc", True, se.auc, y, scores, nan, "simplest_adequate", seed=0)
    assert kept.chosen == "configured"
    with pytest.raises(ValueError, match="model.select must be one of"):
        ms.select("auc", True, se.auc, y, scores, scores, "best", seed=0)


def test_the_regression_margin_is_a_bootstrap_in_the_labels_units():
    rng = np.random.default_rng(3)
    y = rng.normal(size=300)

    def rmse(p, t):
        return float(np.sqrt(np.mean((p - t) ** 2)))

    chosen = ms.select("rmse", False, rmse, y, y + rng.normal(scale=2.0, size=300),
                       y + rng.normal(scale=2.05, size=300), "simplest_adequate", seed=0,
                       unit=10.0)
    assert chosen.chosen == "linear"  # 2.0 vs 2.05 at n=300 is within the error
    # The paired bootstrap's spread: each RMSE's is about sigma / sqrt(2n), and with the two
    # models' errors independent their difference's is sqrt(2) times that, sigma / sqrt(n).
    assert chosen.error == pytest.approx(chosen.linear / math.sqrt(300), rel=0.2)
    record = chosen.record()
    assert record["linear"] == pytest.approx(10 * chosen.linear, abs=1e-5)  # label units
    assert record["margin"] == pytest.approx(10 * chosen.margin, abs=1e-5)


def test_the_naive_bar_for_each_metric():
    rng = np.random.default_rng(0)
    y = rng.integers(0, 2, 400)
    auc = ms.naive_bar("auc", y, y, None, seed=0)
    assert auc["score"] == 0.5 and auc["higher_is_better"]
    assert auc["bar"] == pytest.approx(0.5 + ms.Z * _hanley_mcneil(0.5, y.sum(), 400 - y.sum()),
                                       abs=1e-6)

    train = np.array([2] * 50 + [0] * 30 + [1] * 20)
    evaluation = np.array([2] * 40 + [0] * 40 + [1] * 20)
    acc = ms.naive_bar("accuracy", evaluation, train, ["x", "y", "z"], seed=0)
    assert acc["score"] == pytest.approx(0.4) and "'z'" in acc["predictor"]  # training majority
    # Wilson's upper bound at p = 0.4, n = 100 (about the normal one at this n).
    z2 = ms.Z ** 2
    wilson = (0.4 + z2 / 200 + ms.Z * math.sqrt(0.24 / 100 + z2 / 40000)) / (1 + z2 / 100)
    assert acc["bar"] == pytest.approx(wilson, abs=1e-6)
    assert abs(acc["bar"] - (0.4 + ms.Z * math.sqrt(0.24 / 100))) < 0.005

    values = rng.normal(loc=100, scale=5, size=500)
    rmse = ms.naive_bar("rmse", values, values + 1.0, None, seed=0)
    expected = math.sqrt(np.mean((values - (values.mean() + 1.0)) ** 2))
    assert rmse["score"] == pytest.approx(expected, abs=1e-5) and not rmse["higher_is_better"]
    assert rmse["bar"] < rmse["score"] and "training mean" in rmse["predictor"]
    assert ms.naive_bar("mae", values[:0], values, None, seed=0)["bar"] is None


def test_the_naive_bar_never_collapses_onto_the_naive_score():
    """All one class in the eval split: nothing can be judged (AUC undefined, the naive
    predictor perfect). None of the training majority: Wilson's bound stays above 0. A tiny
    split whose error reaches 1 is too small to bless anything."""
    train = np.array([0] * 90 + [1] * 10)
    for metric in ("auc", "accuracy"):
        one_class = ms.naive_bar(metric, np.zeros(30), train, ["a", "b"], seed=0)
        assert one_class["bar"] is None and "one class (n=30)" in one_class["summary"]
    none_of_it = ms.naive_bar("accuracy", np.array([1] * 20 + [2] * 10), train, None, seed=0)
    assert none_of_it["score"] == 0.0 and none_of_it["bar"] == pytest.approx(
        ms.Z ** 2 / (30 + ms.Z ** 2), rel=1e-4)
    tiny = ms.naive_bar("auc", np.array([0, 1, 0, 1, 1]), train, None, seed=0)
    assert tiny["bar"] is None and "too small (n=5)" in tiny["summary"]
    # Regression: the error of an RMSE over a few rows is itself a guess from those rows
    # (Student's t, n - 1 degrees of freedom); three rows cannot show anything better than
    # the training mean (scikit-learn's linnerud leaves 3 for its eval split).
    waist = np.array([37.0, 33.0, 36.0])
    for metric in ("rmse", "mae"):
        three = ms.naive_bar(metric, waist, np.array([35.5] * 17), None, seed=0)
        assert three["bar"] is None and "too small (n=3)" in three["summary"], three
    from scipy import stats

    labels = np.random.default_rng(1).normal(50, 10, size=12)
    twelve = ms.naive_bar("rmse", labels, labels + 15.0, None, seed=0)
    assert twelve["bar"] == pytest.approx(
        twelve["score"] - stats.t.ppf(0.975, 11) * twelve["error"], abs=1e-5)
    # Eval rows of a class the training split never had count as the naive predictor's
    # misses, as the Evaluator counts them.
    unknown = ms.naive_bar("accuracy", np.array([0] * 60 + [-1] * 40), train, None, seed=0)
    assert unknown["score"] == pytest.approx(0.6) and unknown["n"] == 100


def _config(threshold=None):
    from tandem.pipeline.config import load_config
    from tandem.pipeline.evaluation import eval_config

    # The shipped taxi config sets a threshold; null takes the default (the naive bar).
    value = "null" if threshold is None else threshold
    return eval_config(load_config("taxi", [f"evaluation.threshold={value}"]))


def _bounds(config):
    found = []
    for spec in config.metrics_specs:
        for metric in spec.metrics:
            for per_slice in metric.per_slice_thresholds:
                found.append((metric.class_name, per_slice.threshold))
    return found


def test_the_evaluator_fills_the_naive_bar_only_where_no_threshold_is_set():
    naive = {"bar": 3.25, "higher_is_better": False, "summary": "naive"}
    config = _config()
    assert apply_naive_bar(config, naive)
    ((name, threshold),) = _bounds(config)
    assert name == "RootMeanSquaredError"
    assert threshold.value_threshold.upper_bound.value == 3.25
    assert not threshold.value_threshold.HasField("lower_bound")
    assert threshold.HasField("change_threshold")  # still no worse than the last blessed

    configured = _config(threshold=1.5)
    assert not apply_naive_bar(configured, naive)
    ((_, threshold),) = _bounds(configured)
    assert threshold.value_threshold.upper_bound.value == 1.5

    with pytest.raises(NoBar, match="set evaluation.threshold"):
        apply_naive_bar(_config(), None)
    with pytest.raises(NoBar):
        apply_naive_bar(_config(), {"bar": None, "summary": "no labelled eval examples"})


def test_with_no_max_regression_the_change_allowed_is_the_models_sampling_error():
    from tandem.pipeline.config import load_config
    from tandem.pipeline.evaluation import eval_config

    def change(config):
        ((_, threshold),) = _bounds(config)
        return threshold.change_threshold

    # A configured max_regression is used as it is; nothing is left open to fill.
    configured = _config()
    assert change(configured).absolute.value == pytest.approx(0.1)  # taxi's own
    assert not apply_tolerance(configured, {"tolerance": 0.5})
    assert change(configured).absolute.value == pytest.approx(0.1)

    opened = eval_config(load_config("taxi", ["evaluation.max_regression=null"]))
    assert not change(opened).HasField("absolute")  # TFMA would pass any change: fill it
    with pytest.raises(NoBar, match="set evaluation.max_regression"):
        apply_tolerance(opened, None)
    with pytest.raises(NoBar, match="no sampling error"):
        apply_tolerance(opened, {"tolerance": None, "summary": "no sampling error of rmse"})
    assert apply_tolerance(opened, {"tolerance": 0.25})
    assert change(opened).absolute.value == pytest.approx(0.25)  # lower is better: +0.25
    auc = eval_config(load_config("listening", ["evaluation.max_regression=null"]))
    assert apply_tolerance(auc, {"tolerance": 0.02})
    assert change(auc).absolute.value == pytest.approx(-0.02)  # higher is better: -0.02



def _served(directory, weight):
    """A SavedModel whose serving_default reads serialized tf.Examples (feature x) and
    predicts weight * x, as tandem's exported regressors answer."""
    import tensorflow as tf

    class Served(tf.Module):
        @tf.function(input_signature=[tf.TensorSpec([None], tf.string)])
        def serve(self, examples):
            x = tf.io.parse_example(examples, {"x": tf.io.FixedLenFeature([], tf.float32)})
            return {"predictions": weight * x["x"]}

    module = Served()
    tf.saved_model.save(module, str(directory), signatures={"serving_default": module.serve})
    return str(directory)


def test_the_default_change_tolerance_is_the_paired_error_of_candidate_minus_baseline(tmp_path):
    """Heavy-tailed labels: each model's own RMSE error is wide, the paired difference's is
    narrow, and the Evaluator's tolerance is 1.96 of the paired bootstrap's spread, over the
    same labelled eval examples both served models score."""
    import tensorflow as tf
    from tensorflow.core.example import example_pb2

    from tandem.components.evaluator import RESAMPLES, paired_tolerance

    rng = np.random.default_rng(7)
    n = 1200
    x = rng.normal(size=n)
    y = x + rng.normal(scale=0.3, size=n) + np.where(rng.random(n) < 0.02,
                                                    rng.exponential(20.0, n), 0.0)
    path = tmp_path / "eval" / "data.gz"
    path.parent.mkdir()
    with tf.io.TFRecordWriter(str(path), "GZIP") as w:
        for i in range(n):
            e = example_pb2.Example()
            e.features.feature["x"].float_list.value.append(x[i])
            if i % 10:  # every tenth example arrives unlabelled: it is left out
                e.features.feature["tips"].float_list.value.append(y[i])
            w.write(e.SerializeToString())
    candidate, baseline = _served(tmp_path / "b", 0.8), _served(tmp_path / "a", 1.0)
    record = {"problem_type": "regression", "label": "tips", "classes": None}
    found = paired_tolerance(candidate, baseline, [str(tmp_path / "eval" / "*")], "rmse", record)
    labelled = np.arange(n) % 10 != 0
    assert found["n"] == labelled.sum()
    xs, ys = x[labelled].astype(np.float32), y[labelled].astype(np.float32)

    def rmse(p, t):
        return float(np.sqrt(np.mean((p - t) ** 2)))

    draws = np.random.default_rng(0)
    diffs = []
    for _ in range(RESAMPLES):
        idx = draws.integers(0, len(ys), len(ys))
        diffs.append(rmse(0.8 * xs[idx], ys[idx]) - rmse(xs[idx], ys[idx]))
    assert found["tolerance"] == pytest.approx(ms.Z * np.std(diffs, ddof=1), rel=1e-3)
    # One score's error would allow a change many times larger.
    one_score = se.metric_error("rmse", rmse(xs, ys), xs, ys)
    assert found["tolerance"] < ms.Z * one_score / 4
    assert "1.96 paired sampling errors of the difference at n=1080" in found["summary"]


def test_a_higher_is_better_bar_is_a_lower_bound():
    per_slice = tfma.PerSliceMetricThreshold(slicing_specs=[tfma.SlicingSpec()],
                                             threshold=tfma.MetricThreshold())
    metric = tfma.MetricConfig(class_name="AUC", per_slice_thresholds=[per_slice])
    config = tfma.EvalConfig(metrics_specs=[tfma.MetricsSpec(metrics=[metric])])
    assert apply_naive_bar(config, {"bar": 0.58, "higher_is_better": True, "summary": ""})
    ((_, threshold),) = _bounds(config)
    assert threshold.value_threshold.lower_bound.value == 0.58


def test_the_regression_margin_is_paired_so_a_shared_heavy_tail_does_not_hide_a_better_model():
    # Tips-like labels: mostly small, a few huge ones neither model can predict. Those rows
    # dominate each RMSE's own bootstrap spread, but move both scores together.
    rng = np.random.default_rng(11)
    n = 1500
    x = rng.normal(size=n)
    y = 1.0 + x + np.where(rng.random(n) < 0.01, rng.exponential(30.0, n), 0.0)
    configured = 1.0 + x + rng.normal(scale=0.3, size=n)
    linear = 1.0 + 0.5 * x + rng.normal(scale=0.3, size=n)

    def rmse(p, t):
        return float(np.sqrt(np.mean((p - t) ** 2)))

    picked = ms.select("rmse", False, rmse, y, configured, linear, "simplest_adequate", seed=0)
    one_score = se.metric_error("rmse", picked.linear, linear, y, seed=0)
    # One score's error would call this a tie and ship the worse model.
    assert picked.gain < ms.Z * one_score
    assert picked.error < one_score / 3
    assert picked.chosen == "configured" and picked.better
    # Paired, and still a two-sided test: swapping the models gives the same margin.
    swapped = ms.select("rmse", False, rmse, y, linear, configured, "simplest_adequate", seed=0)
    assert swapped.chosen == "linear" and swapped.simpler_better
    assert swapped.error == pytest.approx(picked.error, rel=1e-9)
