"""The slice rule (Model 6, 7): large enough slices reach the threshold beyond their
sampling error; inclusion slices do not trail the overall metric by more than the gap;
small slices are not judged and never veto a model."""

import numpy as np
import pytest

from tandem.components.shadow.compare import _auc
from tandem.components.slice_gate import describe, judge, standard_error

METRICS = {
    ("", "candidate"): {"auc": 0.78, "example_count": 40000},
    ("country=US", "candidate"): {"auc": 0.80, "example_count": 15000, "mean_label": 0.4},
    ("country=DE", "candidate"): {"auc": 0.71, "example_count": 4000, "mean_label": 0.4},
    ("country=JP", "candidate"): {"auc": 0.40, "example_count": 30},  # too small to judge
    ("device=car", "candidate"): {"auc": 0.60, "example_count": 5000, "mean_label": 0.5},
    ("device=tv", "candidate"): {"auc": 0.63, "example_count": 200, "mean_label": 0.5},
    ("device=car", "baseline"): {"auc": 0.90, "example_count": 5000},  # not the candidate
}


def test_small_slices_are_not_judged_and_clearly_failing_slices_are_named():
    countries = judge(METRICS, [["country"]], "auc", True, 0.65, 200)
    assert countries["passed"] and countries["small"] == ["country=JP"]
    assert set(countries["judged"]) == {"country=US", "country=DE"}
    both = judge(METRICS, [["country"], ["device"]], "auc", True, 0.65, 200)
    # car (n=5000) is clearly below 0.65; tv (n=200) is below it, but within its error.
    assert not both["passed"] and both["failed"] == ["device=car"]
    assert "below the threshold: device=car 0.6000" in describe(
        both, [["country"], ["device"]], "auc", 0.65, 200)


def test_a_gate_that_judged_nothing_fails_closed_and_says_why():
    mistyped = judge(METRICS, [["contry"]], "auc", True, 0.65, 200)
    assert not mistyped["passed"] and not mistyped["judged"]
    assert "(no auc for any slice of them in the evaluation): nothing judged" in describe(
        mistyped, [["contry"]], "auc", 0.65, 200)
    wrong_metric = judge(METRICS, [["country"]], "auc_typo", True, 0.65, 200)
    assert not wrong_metric["passed"]
    all_small = judge(METRICS, [["country"]], "auc", True, 0.65, 100_000)
    assert not all_small["passed"] and len(all_small["small"]) == 3
    assert "(3 smaller ones): nothing judged, so the gate fails closed" in describe(
        all_small, [["country"]], "auc", 0.65, 100_000)


def test_inclusion_bounds_how_far_a_slice_trails_the_overall_metric():
    tight = judge(METRICS, [["country"]], "auc", True, 0.65, 200, max_gap=0.03)
    assert not tight["passed"] and tight["behind"] == ["country=DE"]
    assert tight["gap"] == pytest.approx(0.07)
    assert judge(METRICS, [["country"]], "auc", True, 0.65, 200, max_gap=0.1)["passed"]


def test_lower_is_better_metrics_fail_above_the_threshold():
    rmse = {("zone=1", "candidate"): {"root_mean_squared_error": 3.0, "example_count": 500},
            ("zone=2", "candidate"): {"root_mean_squared_error": 6.0, "example_count": 500}}
    verdict = judge(rmse, [["zone"]], "root_mean_squared_error", False, 5.0, 200)
    assert verdict["failed"] == ["zone=2"]
    # The worst slice named is the one of the highest error, not of the lowest value.
    assert "(worst zone=2 6.0000" in describe(verdict, [["zone"]], "root_mean_squared_error",
                                              5.0, 200)


def test_the_auc_standard_error_matches_the_spread_of_resampled_slices():
    rng = np.random.default_rng(0)
    n, aucs = 400, []
    for _ in range(400):
        y = rng.random(n) < 0.4
        score = rng.normal(size=n) + 1.1 * y
        aucs.append(_auc(score, y.astype(float)))
    se = standard_error("auc", float(np.mean(aucs)), n, 0.4)
    assert se == pytest.approx(np.std(aucs), rel=0.15)
