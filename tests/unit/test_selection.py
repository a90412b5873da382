"""The learning path's pure parts: significance tests, the selection rule, demos, fitted calibration."""
import numpy as np
import pytest

from backend.labeling.calibration import fit_calibrator, softmax
from backend.labeling.recipe import ControlRecipe
from backend.refinement.candidates.few_shot import demos_of, pick_demo_indices
from backend.refinement.selection.optimizer import select
from backend.refinement.validation.crossval import CandidateResult, fold_ids
from backend.refinement.validation.significance import mcnemar_exact, paired_bootstrap_macro_f1


def _result(name, gold, pred, n_labels=2, confidence=0.8):
    probs = np.full((len(gold), n_labels), (1 - confidence) / (n_labels - 1))
    probs[np.arange(len(gold)), pred] = confidence
    return CandidateResult(name, ControlRecipe(), probs, np.asarray(gold))


def test_mcnemar_exact_values():
    cand = np.array([1] * 10 + [0] * 0 + [1] * 5, dtype=bool)
    cur = np.array([0] * 10 + [1] * 5, dtype=bool)
    b, c, p = mcnemar_exact(cand, cur)
    assert (b, c) == (10, 0)
    assert p == pytest.approx(2 / 2**10)
    assert mcnemar_exact(cur, cur)[2] == 1.0


def test_bootstrap_is_significant_only_for_a_real_gain():
    rng = np.random.default_rng(1)
    gold = rng.integers(0, 2, 200)
    good = np.where(rng.random(200) < 0.9, gold, 1 - gold)
    bad = np.where(rng.random(200) < 0.6, gold, 1 - gold)
    gain, p = paired_bootstrap_macro_f1(gold, good, bad, 2)
    assert gain > 0.2 and p < 0.01
    gain, p = paired_bootstrap_macro_f1(gold, bad, good, 2)
    assert gain < 0 and p > 0.99


def test_a_worse_or_insignificant_candidate_is_never_accepted():
    rng = np.random.default_rng(2)
    gold = rng.integers(0, 2, 100)
    current = _result("current", gold, np.where(rng.random(100) < 0.8, gold, 1 - gold))
    worse = _result("worse", gold, np.where(rng.random(100) < 0.6, gold, 1 - gold))
    same = _result("same", gold, current.probs.argmax(1))
    chosen, _, _, p, accepted = select(current, [worse, same], alpha=0.05)
    assert not accepted
    better = _result("better", gold, np.where(rng.random(100) < 0.97, gold, 1 - gold))
    chosen, b, c, p, accepted = select(current, [worse, better, same], alpha=0.05)
    assert accepted and chosen.name == "better" and p < 0.05 and b > c


def test_demo_draw_covers_every_label_and_is_reproducible():
    texts = [f"t{i}" for i in range(30)]
    gold = [0] * 25 + [1] * 4 + [2]
    demos = demos_of(texts, gold, ["a", "b", "c"], pick_demo_indices(gold, 6, seed=3))
    assert len(demos) == 6
    assert {d.labels[0] for d in demos} == {"a", "b", "c"}
    assert demos == demos_of(texts, gold, ["a", "b", "c"], pick_demo_indices(gold, 6, seed=3))


def test_fold_ids_are_balanced():
    folds = fold_ids(103, 5)
    assert sorted(np.bincount(folds)) == [20, 20, 21, 21, 21]


def test_fitted_calibration_removes_a_bias_and_lowers_log_loss():
    rng = np.random.default_rng(0)
    gold = rng.integers(0, 3, 600)
    true_logits = np.eye(3)[gold] * 2.0 + rng.normal(0, 1.0, (600, 3))
    biased = true_logits * 3.0 + np.array([2.0, 0.0, -2.0])  # overconfident and biased to label 0
    cal = fit_calibrator(biased, gold)

    def nll(p):
        return -np.log(p[np.arange(len(gold)), gold]).mean()

    assert nll(cal.apply(biased, False)) < nll(softmax(biased)) - 0.1
    assert cal.temperature > 1.5
    assert cal.bias[0] < cal.bias[2]


def test_better_probabilities_with_the_same_labels_are_accepted_but_not_at_a_real_f1_cost():
    rng = np.random.default_rng(4)
    gold = rng.integers(0, 2, 200)
    pred = np.where(rng.random(200) < 0.8, gold, 1 - gold)
    overconfident = _result("current", gold, pred, confidence=0.99)
    honest = _result("calibrated", gold, pred, confidence=0.8)
    chosen, _, _, p, accepted = select(overconfident, [honest], alpha=0.05)
    assert accepted and chosen.name == "calibrated" and p < 0.05
    worse_pred = np.where(rng.random(200) < 0.65, gold, 1 - gold)
    cautious_but_wrong = _result("cautious", gold, worse_pred, confidence=0.55)
    _, _, _, _, accepted = select(overconfident, [cautious_but_wrong], alpha=0.05)
    assert not accepted


def test_holm_rejects_in_order_and_stops_at_the_first_failure():
    from backend.refinement.validation.significance import holm_rejections

    assert holm_rejections([0.01, 0.04, 0.03, 0.5], 0.05) == [True, False, False, False]  # 0.03 ≥ 0.05/3
    assert holm_rejections([0.001, 0.015, 0.02], 0.05) == [True, True, True]  # 0.015 < 0.025, 0.02 < 0.05
    assert holm_rejections([], 0.05) == []


def test_candidates_that_are_only_lucky_are_rarely_shipped():
    """Ten candidates drawn like the current one (70 % right), judged on 25 items, 24 times:
    uncorrected, a job would ship one of them about a third of the time; Holm keeps it near alpha."""
    shipped = uncorrected = 0
    for seed in range(24):
        rng = np.random.default_rng(seed)
        gold = rng.integers(0, 2, 25)
        current = _result("current", gold, np.where(rng.random(25) < 0.7, gold, 1 - gold))
        noise = [_result(f"c{i}", gold, np.where(rng.random(25) < 0.7, gold, 1 - gold)) for i in range(10)]
        shipped += select(current, noise, alpha=0.05)[4]
        uncorrected += min(c.metrics["p_f1_vs_current"] for c in noise) < 0.05
    assert uncorrected >= 6
    assert shipped <= 3


def test_among_f1_ties_the_more_honest_candidate_wins_but_a_real_f1_lead_does_not_tie():
    rng = np.random.default_rng(11)
    gold = rng.integers(0, 2, 200)
    current = _result("current", gold, np.where(rng.random(200) < 0.6, gold, 1 - gold))
    good = np.where(rng.random(200) < 0.85, gold, 1 - gold)
    flip = np.flatnonzero(good != gold)[:2]  # two more right answers: a noise-level F1 lead
    lucky = good.copy()
    lucky[flip] = gold[flip]
    overconfident = _result("4-shot+head", gold, lucky, confidence=0.995)
    honest = _result("head", gold, good, confidence=0.85)
    chosen, _, _, _, accepted = select(current, [overconfident, honest], alpha=0.05)
    assert overconfident.metrics["macro_f1"] > honest.metrics["macro_f1"]
    assert accepted and chosen.name == "head" and "4-shot+head" in chosen.metrics["chosen_over"]

    much_better = _result("8-shot+head", gold, np.where(rng.random(200) < 0.95, gold, 1 - gold), confidence=0.99999)
    chosen, _, _, _, accepted = select(current, [much_better, honest], alpha=0.05)
    assert much_better.metrics["log_loss"] > honest.metrics["log_loss"]
    assert accepted and chosen.name == "8-shot+head" and "chosen_over" not in chosen.metrics


def test_a_log_loss_edge_that_is_only_noise_does_not_override_the_f1_leader():
    rng = np.random.default_rng(11)
    gold = rng.integers(0, 2, 200)
    current = _result("current", gold, np.where(rng.random(200) < 0.6, gold, 1 - gold))
    leader_pred = np.where(rng.random(200) < 0.88, gold, 1 - gold)
    follower_pred = leader_pred.copy()
    wrong = np.flatnonzero(leader_pred == gold)[:3]
    follower_pred[wrong] = 1 - gold[wrong]  # three fewer right: F1 behind by noise
    leader = _result("head", gold, leader_pred, confidence=0.95)
    follower = _result("calibrated+head", gold, follower_pred, confidence=0.88)
    chosen, _, _, _, accepted = select(current, [leader, follower], alpha=0.05)
    assert follower.metrics["log_loss"] < leader.metrics["log_loss"]  # lower, but not significantly
    assert accepted and chosen.name == "head" and "chosen_over" not in chosen.metrics
