"""The two control kinds behind one interface: each reads its own probabilities and ground truth,
and selection, refits and heads get the same answers from either (pure logic)."""
import numpy as np
import pytest

from backend.labeling.calibration import Calibrator
from backend.labeling.label_config import parse_label_config
from backend.refinement.validation.control_kind import MULTIPLE, SINGLE, kind_of
from backend.refinement.validation.crossval import fold_ids


def _config(choice: str) -> str:
    return (f'<View><Text name="text" value="$text"/><Choices name="label" toName="text" choice="{choice}">'
            '<Choice value="a"/><Choice value="b"/><Choice value="c"/></Choices></View>')


def test_a_control_gets_the_kind_of_its_choices():
    assert kind_of(parse_label_config(_config("single")).controls[0]) is SINGLE
    assert kind_of(parse_label_config(_config("multiple")).controls[0]) is MULTIPLE
    assert (SINGLE.label_metric, MULTIPLE.label_metric) == ("macro_f1", "micro_f1")


def _single(n=300, accuracy=0.8, confidence=0.95, seed=0):
    rng = np.random.default_rng(seed)
    gold = rng.integers(0, 3, n)
    pred = np.where(rng.random(n) < accuracy, gold, (gold + 1) % 3)
    probs = np.full((n, 3), (1 - confidence) / 2)
    probs[np.arange(n), pred] = confidence
    return gold, probs


def _multiple(n=300, accuracy=0.8, confidence=0.95, seed=0):
    rng = np.random.default_rng(seed)
    gold = (rng.random((n, 3)) < 0.4).astype(np.int8)
    pred = np.where(rng.random((n, 3)) < accuracy, gold, 1 - gold)
    return gold, np.where(pred == 1, confidence, 1 - confidence)


@pytest.mark.parametrize("kind, make", [(SINGLE, _single), (MULTIPLE, _multiple)])
def test_each_kind_scores_right_answers_better_and_finds_over_confidence(kind, make):
    gold, probs = make()
    _, worse = make(accuracy=0.5, seed=0)
    gain, p = kind.label_f1_gain(gold, probs, worse)
    assert gain > 0.1 and p < 0.01
    assert kind.correct(gold, probs).mean() > kind.correct(gold, worse).mean()
    assert kind.item_loss(gold, probs).shape == (len(gold),)
    assert kind.summarize(gold, probs)[kind.label_metric] > kind.summarize(gold, worse)[kind.label_metric]
    # 95 % confident at about 80 % right: the fitted temperature softens, out of fold too
    tempered, temperature = kind.cross_fitted_temperature(probs, gold, fold_ids(len(gold), 5))
    assert temperature > 1.0
    assert kind.item_loss(gold, tempered).mean() < kind.item_loss(gold, probs).mean()


def test_only_a_calibration_fitted_on_ground_truth_is_refit():
    prior = Calibrator(bias=(0.0, 0.0, 0.0), method="contextual")
    assert SINGLE.calibration_fit(None, prior) is None
    assert SINGLE.calibration_fit(prior, prior) is None  # content-free: nothing learnt from labels
    assert SINGLE.calibration_fit(Calibrator(bias=(0.1, 0.0, -0.1), method="fitted"), prior) is not None
    assert MULTIPLE.calibration_fit(Calibrator(bias=(0.0,) * 3, method="fitted-per-label"), prior) is not None
    assert MULTIPLE.calibration_fit(Calibrator(bias=(0.0,) * 3, method="fitted-per-label"), None) is None
    assert MULTIPLE.calibration_fit(Calibrator(bias=(0.1, 0.0, -0.1), method="fitted"), prior) is None
