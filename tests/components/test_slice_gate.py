"""The slice rule (Model 6, 7): large enough slices reach the threshold; inclusion slices
also lie within the gap; small slices are not judged and never veto a model."""

from components.slice_gate import describe, judge

METRICS = {
    ("", "candidate"): {"auc": 0.78, "example_count": 4000},
    ("country=US", "candidate"): {"auc": 0.80, "example_count": 1500},
    ("country=DE", "candidate"): {"auc": 0.71, "example_count": 400},
    ("country=JP", "candidate"): {"auc": 0.40, "example_count": 30},  # too small to judge
    ("device=car", "candidate"): {"auc": 0.62, "example_count": 250},
    ("device=car", "baseline"): {"auc": 0.90, "example_count": 250},  # not the candidate
}


def test_small_slices_are_not_judged_and_failing_slices_are_named():
    countries = judge(METRICS, [["country"]], "auc", True, 0.65, 200)
    assert countries["passed"] and countries["small"] == ["country=JP"]
    assert set(countries["judged"]) == {"country=US", "country=DE"}
    both = judge(METRICS, [["country"], ["device"]], "auc", True, 0.65, 200)
    assert not both["passed"] and both["failed"] == ["device=car"]
    assert "below the threshold: device=car 0.6200" in describe(
        both, [["country"], ["device"]], "auc", 0.65, 200)


def test_inclusion_bounds_the_gap_between_the_best_and_the_worst_slice():
    wide = judge(METRICS, [["country"]], "auc", True, 0.65, 200, max_gap=0.05)
    assert not wide["passed"] and abs(wide["gap"] - 0.09) < 1e-9
    assert judge(METRICS, [["country"]], "auc", True, 0.65, 200, max_gap=0.1)["passed"]


def test_lower_is_better_metrics_fail_above_the_threshold():
    rmse = {("zone=1", "candidate"): {"rmse": 3.0, "example_count": 500},
            ("zone=2", "candidate"): {"rmse": 6.0, "example_count": 500}}
    assert judge(rmse, [["zone"]], "rmse", False, 5.0, 200)["failed"] == ["zone=2"]
