import numpy as np
import pytest

from backend.evaluation.metrics import accuracy, expected_calibration_error, macro_f1


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
