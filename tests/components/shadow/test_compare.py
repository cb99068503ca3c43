"""The replay's comparison in numpy: what each kind of model gets, which way each quality
metric is gated, and the class names a multi-class model is compared under."""

import numpy as np
import pytest

from tandem.components.shadow.compare import (
    CLASSIFICATION,
    REGRESSION,
    Thresholds,
    compare,
    quality,
    verdict,
)

# What a binary report held before multi-class and regression quality were added: a binary
# report must stay byte-identical, so it may not gain a key.
BINARY_OVERALL = {"agreement", "symmetric_flip_rate", "pos_to_neg_flip_rate",
                  "neg_to_pos_flip_rate", "mean_score", "abs_delta"}
BINARY_QUALITY = {"n", "auc", "accuracy"}


def _scores(rng, n: int, k: int) -> np.ndarray:
    logits = rng.normal(size=(n, k))
    return np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)


def test_a_binary_model_gets_the_keys_it_had_and_two_column_scores_stay_binary():
    rng = np.random.default_rng(0)
    a, b, y = rng.random(300), rng.random(300), rng.integers(0, 2, 300)
    t = Thresholds(bootstrap=20)
    assert set(compare(a, b, CLASSIFICATION, t, rng)) == BINARY_OVERALL
    assert set(quality(a, b, y, CLASSIFICATION, t, rng)) == BINARY_QUALITY
    two = np.stack([1 - a, a], axis=1)
    assert "flip_matrix" not in compare(two, np.stack([1 - b, b], axis=1), CLASSIFICATION, t,
                                        rng)


def test_flip_matrix_counts_each_pair_of_classes_under_their_names():
    a = np.array([[.8, .1, .1], [.1, .8, .1], [.1, .8, .1], [.1, .1, .8]])
    b = np.array([[.8, .1, .1], [.8, .1, .1], [.1, .8, .1], [.1, .5, .4]])
    t = Thresholds(bootstrap=20)
    out = compare(a, b, CLASSIFICATION, t, np.random.default_rng(0), ["x", "y", "z"])
    assert out["flip_matrix"] == {"classes": ["x", "y", "z"],
                                  "counts": [[1, 0, 0], [1, 1, 0], [0, 1, 0]]}
    assert out["symmetric_flip_rate"]["value"] == 0.5
    # |delta| is the largest move of any class's score: 0.7, request 2's first class (the
    # last class moved 0.4 at most).
    assert out["abs_delta"]["max"] == pytest.approx(0.7)
    # Names that do not name every score column are not used.
    unnamed = compare(a, b, CLASSIFICATION, t, np.random.default_rng(0), ["x", "y"])
    assert unnamed["flip_matrix"]["classes"] == ["0", "1", "2"]


def test_log_loss_and_mae_match_scikit_learn():
    from sklearn.metrics import log_loss, mean_absolute_error

    rng = np.random.default_rng(1)
    a, b, y = _scores(rng, 400, 4), _scores(rng, 400, 4), rng.integers(0, 4, 400)
    t = Thresholds(bootstrap=50)
    q = quality(a, b, y.astype(float), CLASSIFICATION, t, rng)
    assert set(q) == {"n", "accuracy", "log_loss"}
    for model, scores in (("a", a), ("b", b)):
        assert q["log_loss"][model]["value"] == pytest.approx(
            log_loss(y, scores, labels=range(4)), abs=1e-6)
    # A confident miss costs -log(1e-15), not infinity.
    missed = a.copy()
    missed[0, y[0]] = 0.0
    q = quality(missed, b, y.astype(float), CLASSIFICATION, t, rng)
    assert q["log_loss"]["a"]["value"] == pytest.approx(
        log_loss(y, a, labels=range(4)) + (np.log(a[0, y[0]]) - np.log(1e-15)) / 400,
        abs=1e-6)
    pa, pb, target = rng.normal(size=400), rng.normal(size=400), rng.normal(size=400)
    r = quality(pa, pb, target, REGRESSION, t, rng)
    assert set(r) == {"n", "rmse", "mae"}
    assert r["mae"]["b"]["value"] == pytest.approx(mean_absolute_error(target, pb), abs=1e-6)
    diff = r["mae"]["b_minus_a"]
    assert diff["value"] == pytest.approx(r["mae"]["b"]["value"] - r["mae"]["a"]["value"],
                                          abs=2e-6)
    assert diff["low"] <= diff["value"] <= diff["high"]


def _gate(metrics: dict, classes=None) -> dict:
    """The verdict on a comparison that passes everything but quality."""
    overall = {"symmetric_flip_rate": {"high": 0.0}, "abs_delta": {"p99": {"high": 0.0}}}
    quality = {"n": 500, **{name: {"b_minus_a": {"value": (low + high) / 2, "low": low,
                                                 "high": high}}
                            for name, (low, high) in metrics.items()}}
    return verdict(overall, {"max_abs_diff": 0.0}, 500, CLASSIFICATION,
                   Thresholds(max_quality_drop=0.02), quality, classes)


def _failed(result: dict) -> list[str]:
    return [c["check"] for c in result["checks"] if not c["passed"]]


@pytest.mark.parametrize("name", ["log_loss", "mae", "rmse"])
def test_a_lower_is_better_metric_bounds_b_minus_a_from_above(name):
    assert _gate({name: (-0.30, -0.10)})["passed"]  # B better
    assert _gate({name: (-0.01, 0.015)})["passed"]  # B at most 0.015 worse
    worse = _gate({name: (0.01, 0.05)})
    assert _failed(worse) == [f"{name} B - A (95% upper bound)"]
    assert worse["checks"][-1]["value"] == 0.05 and worse["checks"][-1]["limit"] == 0.02


@pytest.mark.parametrize("name", ["accuracy", "auc"])
def test_a_higher_is_better_metric_bounds_b_minus_a_from_below(name):
    assert _gate({name: (0.10, 0.30)})["passed"]
    worse = _gate({name: (-0.05, -0.01)})
    assert _failed(worse) == [f"{name} B - A (95% lower bound)"]
    # B about A, on too few requests to show it within the margin: refused for want of
    # evidence (the interval reaches past -0.02), and passed once the interval is narrow.
    assert _failed(_gate({name: (-0.023, 0.018)})) == [f"{name} B - A (95% lower bound)"]
    assert _gate({name: (-0.018, 0.013)})["passed"]


def test_a_candidate_whose_classes_differ_in_order_fails_naming_the_check():
    same = _gate({}, (["x", "y", "z"], ["x", "y", "z"]))
    assert same["passed"] and same["checks"][2]["check"] == "classes: B's, in order, are A's"
    assert _failed(_gate({}, (["x", "y", "z"], ["y", "x", "z"]))) == [
        "classes: B's, in order, are A's"]


@pytest.mark.parametrize("problem", [CLASSIFICATION, REGRESSION])
def test_every_interval_is_the_percentile_of_its_statistic_resample_by_resample(
        problem, monkeypatch):
    """The intervals are computed for blocks of resamples at once (means from draw counts,
    percentiles from one partition); each must be what the statistic of each resample, one
    at a time, gives. Small blocks, so that more than one is used."""
    from tandem.components.shadow import compare as module

    monkeypatch.setattr(module, "RESAMPLE_CELLS", 1000)
    rng = np.random.default_rng(3)
    n = 301
    a = rng.random(n) if problem == CLASSIFICATION else rng.normal(0, 2, n)
    b = np.clip(a + rng.normal(0, 0.2, n), 0, 1) if problem == CLASSIFICATION else \
        a + rng.normal(0, 0.5, n)
    thresholds = Thresholds(bootstrap=57)
    out = compare(a, b, problem, thresholds, np.random.default_rng(11))
    draws = np.random.default_rng(11).integers(0, n, size=(57, n), dtype=np.int32)

    def expect(values, stat):
        boot = [stat(values[d]) for d in draws]
        return {"value": round(float(stat(values)), 6),
                "low": round(float(np.percentile(boot, 2.5)), 6),
                "high": round(float(np.percentile(boot, 97.5)), 6), "n": n}

    delta = np.abs(b - a)
    for q in (50, 90, 99):
        assert out["abs_delta"][f"p{q}"] == expect(delta, lambda x, q=q: np.percentile(x, q))
    assert out["abs_delta"]["mean"] == pytest.approx(expect(delta, np.mean), abs=2e-6)
    if problem == CLASSIFICATION:
        flips = ((a >= 0.5) != (b >= 0.5)).astype(float)
        assert out["symmetric_flip_rate"] == expect(flips, np.mean)
        assert out["agreement"] == expect(1 - flips, np.mean)
        assert out["pos_to_neg_flip_rate"] == expect(((a >= 0.5) & (b < 0.5)).astype(float),
                                                     np.mean)
        assert out["symmetric_flip_rate"]["high"] > out["symmetric_flip_rate"]["low"]
    else:
        relative = delta / np.maximum(np.abs(a), 1e-9)
        assert out["relative_delta"]["p90"] == expect(relative,
                                                      lambda x: np.percentile(x, 90))
