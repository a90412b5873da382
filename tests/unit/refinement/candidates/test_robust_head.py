"""The robust head: the embedding head with confident label-error suspects down-weighted, the
suspects of each outer fold found without that fold's labels, every item judged as labelled."""
from dataclasses import replace

import numpy as np

from backend.labeling.calibration import Calibrator
from backend.labeling.recipe import ControlRecipe
from backend.refinement.candidates.contract import ControlJob
from backend.refinement.candidates.embedding_head import evaluate_head, head_out_of_fold, train_head
from backend.refinement.candidates.robust_head import (MIN_ITEMS, SUSPECT_WEIGHT, RobustHead, evaluate_robust_head,
                                                       refit_weights, robust_out_of_fold, suspect_weights)
from backend.refinement.validation.control_kind import MULTIPLE, SINGLE
from backend.refinement.validation.crossval import CandidateResult, fold_ids


def blobs(seed: int, n: int = 150, d: int = 40, flip: float = 0.15):
    """Two Gaussian blobs on the unit sphere (label = side of the first axis), a share of the labels
    flipped at random: (embeddings, true labels, given labels, which were flipped)."""
    rng = np.random.default_rng(seed)
    truth = np.arange(n) % 2
    emb = rng.normal(size=(n, d))
    emb[:, 0] += np.where(truth == 1, 2.0, -2.0)
    emb /= np.linalg.norm(emb, axis=1, keepdims=True)
    given = truth.copy()
    flipped = rng.choice(n, int(flip * n), replace=False)
    given[flipped] = 1 - given[flipped]
    return emb, truth, given, flipped


def llm_of(given: np.ndarray) -> CandidateResult:
    return CandidateResult("llm", ControlRecipe(), np.full((len(given), 2), 0.5), given)


def test_with_flipped_labels_the_robust_head_scores_better_on_held_out_items_judged_as_labelled():
    emb, truth, given, _ = blobs(3)
    folds = fold_ids(len(given), 5)
    # the plain head trained as the robust one is (a job may also choose a stronger regularisation)
    plain = CandidateResult("head", ControlRecipe(), head_out_of_fold(emb, given, 2, False, folds), given)
    robust, pooled, mixed = evaluate_robust_head(llm_of(given), emb, folds)
    assert (robust.name, pooled.name, mixed.name) == ("head-robust", "llm+head-robust", "llm+head-robust-mix")
    assert (robust.gold == given).all() and len(robust.probs) == len(given)  # nothing left out of the judging
    assert robust.metrics["macro_f1"] >= plain.metrics["macro_f1"] + 0.03
    assert (robust.probs.argmax(1) == truth).mean() > (plain.probs.argmax(1) == truth).mean()


def test_the_down_weighted_items_are_mostly_flipped_ones():
    emb, _, given, flipped = blobs(3)
    weights = suspect_weights(emb, given, 2, fold_ids(len(given), 5))
    down = np.flatnonzero(weights < 1)
    assert set(np.unique(weights)) <= {SUSPECT_WEIGHT, 1.0} and len(down) > 0
    assert np.isin(down, flipped).mean() > 0.5  # against 0.15 at random


def test_an_outer_folds_suspects_are_found_without_its_labels():
    """Changing every label of outer fold 0 leaves the weights fold 0 was scored with as they were
    (the suspects came from the other folds alone), while the other folds' weights see the change."""
    emb, _, given, _ = blobs(3)
    folds = fold_ids(len(given), 5)
    _, before = robust_out_of_fold(emb, given, 2, folds)
    changed = given.copy()
    changed[folds == 0] = 1 - changed[folds == 0]
    _, after = robust_out_of_fold(emb, changed, 2, folds)
    np.testing.assert_array_equal(before[0], after[0])
    assert any(not np.array_equal(before[f], after[f]) for f in range(1, 5))


def test_the_shipped_recipe_is_an_ordinary_head_fitted_on_all_items_with_their_suspects_down_weighted():
    emb, _, given, _ = blobs(3)
    folds = fold_ids(len(given), 5)
    robust = evaluate_robust_head(llm_of(given), emb, folds)[0]
    coef, intercept = train_head(emb, given, 2, weights=suspect_weights(emb, given, 2, folds))
    np.testing.assert_allclose(np.asarray(robust.recipe.head.coef), coef)
    np.testing.assert_allclose(np.asarray(robust.recipe.head.intercept), intercept)
    assert robust.recipe.head.weight_llm == 0.0 and not robust.recipe.head.balanced and robust.recipe.head.robust
    again = ControlRecipe.from_dict(robust.recipe.to_dict())  # stored and served like any head
    assert again.to_dict() == robust.recipe.to_dict()


def test_without_suspects_it_is_the_plain_head():
    emb, _, truth, _ = blobs(0, flip=0.0)
    folds = fold_ids(len(truth), 5)
    assert (suspect_weights(emb, truth, 2, folds) == 1).all()
    np.testing.assert_allclose(evaluate_robust_head(llm_of(truth), emb, folds)[0].probs,
                               evaluate_head(llm_of(truth), emb, folds)[0].probs, atol=1e-6)


def test_it_is_a_cheap_pooling_plan_for_single_choice_controls_with_enough_items():
    def plans(kind, n):
        gold = np.arange(n) % 2
        if kind is MULTIPLE:
            gold = np.stack([gold, 1 - gold], 1)
        current = CandidateResult("current", ControlRecipe(), np.full(gold.shape if kind is MULTIPLE else (n, 2), 0.5),
                                  gold, kind=kind)
        job = ControlJob(None, None, kind, [""] * n, gold, np.arange(n) % 5, np.zeros((n, 2)), ControlRecipe(),
                         current, np.zeros((n, 2)), Calibrator.identity(2), 8, 1e9)
        return RobustHead().plans(job)

    [plan] = plans(SINGLE, MIN_ITEMS)
    assert (plan.name, plan.cheap, plan.pools) == ("head-robust", True, True)
    assert plans(SINGLE, MIN_ITEMS - 1) == [] and plans(MULTIPLE, 40) == []


def test_a_robust_current_version_is_refit_robust_and_a_plain_one_plain():
    from backend.refinement.selection.current_refit import _refit_head

    emb, _, given, _ = blobs(3)
    robust = evaluate_robust_head(llm_of(given), emb, fold_ids(len(given), 5))[0].recipe.head
    assert (refit_weights(emb, given, 2) < 1).any()  # there are suspects to down-weight
    refit = _refit_head(robust, emb, given, SINGLE)
    coef, _ = train_head(emb, given, 2, weights=refit_weights(emb, given, 2))
    np.testing.assert_allclose(np.asarray(refit.coef), coef)
    assert refit.robust
    plain = _refit_head(replace(robust, robust=False), emb, given, SINGLE)
    np.testing.assert_allclose(np.asarray(plain.coef), train_head(emb, given, 2)[0])
