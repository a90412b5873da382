import numpy as np
import pytest

from backend.metrics.single_label import accuracy, ece_noise_floor, expected_calibration_error, macro_f1


def test_macro_f1_by_hand():
    gold = np.array([0, 0, 1, 1, 2])
    pred = np.array([0, 1, 1, 1, 0])
    # F1: label0 = 2·1/(2+1+1) = .5, label1 = 2·2/(4+1+0) = .8, label2 = 0
    assert macro_f1(gold, pred, 3) == pytest.approx((0.5 + 0.8 + 0.0) / 3)
    assert accuracy(gold, pred) == pytest.approx(0.6)


def test_ece_is_zero_for_a_perfectly_calibrated_model_and_large_for_an_overconfident_one():
    gold = np.array([0, 0, 0, 1])
    calibrated = np.tile([0.75, 0.25], (4, 1))
    assert expected_calibration_error(gold, calibrated) == pytest.approx(0.0)
    overconfident = np.tile([0.99, 0.01], (4, 1))
    assert expected_calibration_error(gold, overconfident) == pytest.approx(0.24)


def test_ece_noise_floor_is_what_a_calibrated_model_shows_and_shrinks_with_more_items():
    """Draw labels from the model's own probabilities (so it is calibrated by construction): the
    measured ECE scatters around the floor, and both fall as the test set grows."""
    rng = np.random.default_rng(3)

    def calibrated_sample(n):
        p1 = rng.beta(2, 2, size=n)
        probs = np.column_stack([1 - p1, p1])
        gold = (rng.random(n) < p1).astype(int)
        return gold, probs

    for n, lo, hi in ((300, 0.02, 0.08), (3000, 0.005, 0.025)):
        measured, floors = [], []
        for _ in range(40):
            gold, probs = calibrated_sample(n)
            measured.append(expected_calibration_error(gold, probs))
            floors.append(ece_noise_floor(probs, draws=100))
        assert lo < np.mean(floors) < hi
        assert np.mean(measured) == pytest.approx(np.mean(floors), rel=0.25)
    overconfident = np.tile([0.99, 0.01], (300, 1))
    gold = (rng.random(300) < 0.25).astype(int)
    assert expected_calibration_error(gold, overconfident) > 10 * ece_noise_floor(overconfident)
