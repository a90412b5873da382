"""The decision threshold of a multiple-choice control: fitted on held-out probabilities, judged
cross-fitted, stored with the version and applied when serving (pure logic)."""
import json

import numpy as np
import pytest

from backend.labeling.label_config import ChoiceControl
from backend.labeling.prediction import chosen_mask, decide
from backend.labeling.recipe import ControlRecipe
from backend.labeling.threshold import cross_fitted_threshold, fit_threshold
from backend.metrics.multi_label import micro_f1, predicted_sets


def test_the_threshold_falls_between_well_ranked_positives_and_the_rest():
    gold = np.array([[1, 0, 0], [0, 1, 0], [0, 0, 1], [1, 0, 1], [0, 1, 0]])
    probs = np.where(gold == 1, 0.35, 0.1)  # calibrated-shy: no label reaches 0.5
    t = fit_threshold(probs, gold)
    assert 0.1 < t <= 0.35
    assert t == pytest.approx(0.23, abs=0.02)  # the middle of the plateau, not hugging either side
    assert micro_f1(gold, predicted_sets(probs, t)) == 1.0
    assert micro_f1(gold, predicted_sets(probs)) < 1.0  # at 0.5 only the "at least one label" rule helps


def test_on_rare_labels_a_calibrated_model_gains_micro_f1_from_a_fitted_threshold():
    rng = np.random.default_rng(0)
    n, k = 400, 20
    p = rng.beta(1, 12, (n, k))  # calibrated: each label applies with the probability the model gives
    gold = (rng.random((n, k)) < p).astype(int)
    t = fit_threshold(p[:200], gold[:200])
    assert t < 0.5
    assert micro_f1(gold[200:], predicted_sets(p[200:], t)) > micro_f1(gold[200:], predicted_sets(p[200:])) + 0.05


def test_each_fold_is_judged_with_a_threshold_fitted_without_it():
    gold = np.tile([[1], [0]], (10, 1))
    folds = np.repeat([0, 1], 10)
    probs = np.where(gold == 1, 0.3, 0.1).astype(float)
    probs[folds == 1] += 0.5  # fold 1 separates at 0.6 to 0.8, fold 0 at 0.1 to 0.3
    rows = cross_fitted_threshold(probs, gold, folds)
    assert np.all((rows[folds == 0] > 0.6) & (rows[folds == 0] <= 0.8))  # fitted on fold 1 only
    assert np.all((rows[folds == 1] > 0.1) & (rows[folds == 1] <= 0.3))


def test_serving_chooses_the_labels_at_or_above_the_threshold_and_never_none():
    assert chosen_mask(np.array([0.3, 0.2, 0.6])).tolist() == [False, False, True]
    assert chosen_mask(np.array([0.3, 0.2, 0.6]), 0.25).tolist() == [True, False, True]
    assert chosen_mask(np.array([0.1, 0.2, 0.05]), 0.25).tolist() == [False, True, False]
    control = ChoiceControl("tags", "text", "text", ("a", "b", "c"), True)
    pred = decide(control, np.array([0.3, 0.2, 0.6]), np.array([0.5, 0.5, 0.5]), threshold=0.25)
    assert pred.chosen == ("a", "c")
    assert pred.score == pytest.approx(0.3 * 0.8 * 0.6)  # P(exactly this set), whatever the threshold


def test_the_threshold_round_trips_through_the_version_json_and_older_versions_have_none():
    recipe = ControlRecipe(threshold=0.18)
    assert ControlRecipe.from_dict(json.loads(json.dumps(recipe.to_dict()))) == recipe
    assert "threshold" not in ControlRecipe().to_dict()
    assert ControlRecipe.from_dict({"prompt": {}, "calibrator": None, "head": None}).threshold is None
