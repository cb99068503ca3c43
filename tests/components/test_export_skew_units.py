"""export_skew's measure: a regression answer's difference relative to the larger of the
label's standard deviation and the answer's size, so float32 rounding of an answer scaled back
to the label's units is not taken for skew, a real skew still fails, and a label of narrow
spread near zero is judged more strictly than in its own units."""

import numpy as np
import pytest

from tandem.components.exported_model_checks import skew

TOLERANCE = 1e-5  # the Trainer's default for export_skew


def _answers(label_mean: float, label_std: float, model_units_diff: float):
    """Training-path answers in the label's units, and served ones that differ from them by
    `model_units_diff` in the model's units, plus float32 rounding as serving returns them."""
    rng = np.random.default_rng(0)
    standardized = rng.normal(size=500).astype(np.float32)
    training = standardized.astype(np.float64) * label_std + label_mean
    served = ((standardized + np.float32(model_units_diff)) * np.float32(label_std)
              + np.float32(label_mean)).astype(np.float32)
    return served.astype(np.float64), training


def test_float32_rounding_of_a_wide_label_is_not_skew():
    served, training = _answers(73.0, 80.0, 0.0)
    label_units = float(np.max(np.abs(served - training)))
    assert label_units > TOLERANCE  # what an absolute comparison in the label's units failed
    diff, units = skew(served, training, "regression", (73.0, 80.0))
    assert diff <= TOLERANCE and "standard deviation 80" in units


@pytest.mark.parametrize("std", [80.0, 0.5, 0.01])
def test_a_real_skew_fails_whatever_the_labels_spread(std):
    """Half a standard deviation, as a feature lost on the serving path moves an answer."""
    served, training = _answers(73.0, std, 0.5)
    diff, _ = skew(served, training, "regression", (73.0, std))
    assert diff > TOLERANCE


def test_a_narrow_label_is_judged_more_strictly_than_in_its_own_units():
    served, training = _answers(0.0, 0.01, 2e-4)  # 2e-6 in the label's units
    assert float(np.max(np.abs(served - training))) < TOLERANCE
    diff, _ = skew(served, training, "regression", (0.0, 0.01))
    assert diff > TOLERANCE


def test_classifiers_compare_probabilities_as_they_are():
    served = np.array([0.2, 0.7, 0.9])
    diff, units = skew(served, served + [0.0, 2e-5, 0.0], "classification", (0.0, 1.0))
    assert diff == pytest.approx(2e-5) and units == ""
