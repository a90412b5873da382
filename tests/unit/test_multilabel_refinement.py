"""Refinement of multi-choice controls, pure parts: per-label calibration, the one-vs-rest head,
label-balanced demos, the paired test and the selection rule."""
import json

import numpy as np
import pytest

from backend.labeling.calibration import Calibrator, fit_multilabel_calibrator, sigmoid
from backend.labeling.head import HeadWeights
from backend.labeling.recipe import ControlRecipe
from backend.metrics.multi_label import log_loss_per_item, macro_f1, micro_f1, predicted_sets
from backend.refinement.candidates.one_vs_rest_head import evaluate_one_vs_rest_head, train_one_vs_rest
from backend.refinement.selection.multilabel_optimizer import (multilabel_demos_of, pick_multilabel_demo_indices,
                                                               select_multilabel)
from backend.refinement.validation.crossval import MultiLabelResult, fold_ids
from backend.refinement.validation.significance import paired_bootstrap_multilabel_f1


def _biased_logits(n, seed=0):
    """True log-odds ℓ (gold drawn from σ(ℓ)); the model says ℓ + 3 for label 0 (over-called) and
    3ℓ − 2 for label 1 (over-confident, under-called)."""
    rng = np.random.default_rng(seed)
    true = rng.normal([-1.5, 0.0], 2.0, (n, 2))
    gold = (rng.random((n, 2)) < sigmoid(true)).astype(int)
    return true * [1.0, 3.0] + [3.0, -2.0], gold


def test_per_label_calibration_removes_each_labels_bias_and_lowers_log_loss():
    logits, gold = _biased_logits(600)
    prior = Calibrator((0.0, 0.0), method="contextual")
    cal = fit_multilabel_calibrator(logits, gold, prior)
    assert cal.method == "fitted-per-label"
    assert cal.bias[0] < -2.0 and cal.bias[1] > 0.3  # pushes label 0 down, label 1 up
    assert cal.temperature[1] > 2.0 > 1.5 > cal.temperature[0]  # softens only the over-confident label
    assert log_loss_per_item(gold, cal.apply(logits, True)).mean() < log_loss_per_item(gold, sigmoid(logits)).mean() - 0.3


def test_per_label_calibration_stays_near_the_prior_with_few_items():
    logits, gold = _biased_logits(600)
    prior = Calibrator((0.5, -0.5), method="contextual")
    few = fit_multilabel_calibrator(logits[:4], gold[:4], prior)
    many = fit_multilabel_calibrator(logits, gold, prior)
    shift = lambda cal: np.abs(np.array(cal.bias) - prior.bias)  # noqa: E731
    assert (shift(few) < shift(many)).all()
    assert shift(few).max() < 1.5


def test_a_per_label_calibrator_round_trips_through_version_json():
    cal = Calibrator((0.1, -2.0), (1.5, 0.8), "fitted-per-label")
    again = ControlRecipe.from_dict(json.loads(json.dumps(ControlRecipe(calibrator=cal).to_dict())))
    assert again.calibrator == cal
    np.testing.assert_allclose(again.calibrator.apply(np.array([[1.0, 1.0]]), True), sigmoid([[1 / 1.5 + 0.1, 1 / 0.8 - 2.0]]))


def test_one_vs_rest_head_gives_a_never_positive_label_only_its_smoothed_frequency():
    rng = np.random.default_rng(0)
    emb = rng.normal(size=(30, 4))
    gold = np.zeros((30, 3), dtype=int)
    gold[:, 0] = emb[:, 0] > 0
    gold[:, 2] = 1
    coef, intercept = train_one_vs_rest(emb, gold)
    assert not coef[1].any() and not coef[2].any()
    probs = sigmoid(emb @ coef.T + intercept)
    np.testing.assert_allclose(probs[:, 1], 0.5 / 31)  # never suggested alone, never ~0 either
    np.testing.assert_allclose(probs[:, 2], 30.5 / 31)
    assert macro_f1(gold[:, :1], probs[:, :1] >= 0.5) > 0.9


def test_one_vs_rest_weights_round_trip_and_endpoints_are_the_parts():
    head = HeadWeights(((1.0, 0.0), (0.0, -1.0)), (0.0, -20.0), 1.0, one_vs_rest=True)
    again = HeadWeights.from_dict(json.loads(json.dumps(head.to_dict())))
    assert again == head and head.to_dict()["one_vs_rest"] is True
    llm = np.array([[0.7, 0.2]])
    emb = np.array([[2.0, 0.5]])
    np.testing.assert_allclose(head.combine(llm, emb), llm, atol=1e-6)
    np.testing.assert_allclose(HeadWeights(head.coef, head.intercept, 0.0, one_vs_rest=True).combine(llm, emb),
                               sigmoid(emb @ np.array(head.coef).T + head.intercept), atol=1e-6)
    assert "one_vs_rest" not in HeadWeights(((1.0,),), (0.0,), 0.5).to_dict()  # single-choice JSON unchanged


def test_pooled_one_vs_rest_head_is_not_worse_than_the_better_part_on_held_out_data():
    """Deterministic fixture: the LLM knows labels 0 and 1, the embeddings know label 2."""
    rng = np.random.default_rng(7)
    n = 300
    gold = (rng.random((n, 3)) < 0.35).astype(int)
    llm_logits = np.stack([(2 * gold[:, 0] - 1) * 2.0, (2 * gold[:, 1] - 1) * 2.0, np.zeros(n)], 1)
    llm_probs = sigmoid(llm_logits + rng.normal(0, 0.8, (n, 3)))
    emb = np.stack([gold[:, 2] * 1.0, 1.0 - gold[:, 2]], 1) + rng.normal(0, 0.35, (n, 2))
    llm = MultiLabelResult("llm", ControlRecipe(), llm_probs, gold)
    head, pooled = evaluate_one_vs_rest_head(llm, emb, fold_ids(n, 5))
    for metric in ("micro_f1", "macro_f1"):  # the weight is chosen on micro-F1, the selection's metric
        assert pooled.metrics[metric] >= max(head.metrics[metric], llm.metrics[metric]), metric
    assert pooled.metrics["micro_f1"] > 0.85
    assert 0 < pooled.recipe.head.weight_llm < 1 and pooled.recipe.head.one_vs_rest


def test_label_balanced_demos_show_rare_labels_and_are_reproducible():
    texts = [f"t{i}" for i in range(40)]
    gold = np.zeros((40, 4), dtype=int)
    gold[:30, 0] = 1
    gold[30:36, 1] = 1
    gold[36:39, 2] = 1
    gold[39, [0, 3]] = 1
    demos = multilabel_demos_of(texts, gold, ["a", "b", "c", "d"], pick_multilabel_demo_indices(gold, 4, seed=3))
    assert len(demos) == 4
    assert {label for d in demos for label in d.labels} == {"a", "b", "c", "d"}
    assert ("a", "d") in [d.labels for d in demos]  # an item keeps its whole label set
    assert demos == multilabel_demos_of(texts, gold, ["a", "b", "c", "d"], pick_multilabel_demo_indices(gold, 4, seed=3))


def test_multilabel_bootstrap_is_significant_only_for_a_real_gain():
    rng = np.random.default_rng(1)
    gold = (rng.random((200, 4)) < 0.3).astype(int)
    good = np.where(rng.random(gold.shape) < 0.95, gold, 1 - gold)
    bad = np.where(rng.random(gold.shape) < 0.7, gold, 1 - gold)
    gain, p = paired_bootstrap_multilabel_f1(gold, good, bad)
    assert gain == pytest.approx(macro_f1(gold, good) - macro_f1(gold, bad))
    assert gain > 0.2 and p < 0.01
    gain, p = paired_bootstrap_multilabel_f1(gold, bad, good)
    assert gain < 0 and p > 0.99
    gain, p = paired_bootstrap_multilabel_f1(gold, good, bad, average="micro")
    assert gain == pytest.approx(micro_f1(gold, good) - micro_f1(gold, bad)) and p < 0.01


def test_multilabel_selection_prefers_honest_sets_to_saying_yes_to_everything():
    """28 rare labels: 'yes' to all wins per-label macro-F1 at 0.5 but loses micro-F1 and log-loss."""
    rng = np.random.default_rng(3)
    n, k = 200, 28
    gold = np.zeros((n, k), dtype=int)
    gold[np.arange(n), rng.integers(0, k, n)] = 1
    yes_to_all = MultiLabelResult("current", ControlRecipe(), np.full((n, k), 0.7), gold)
    honest_probs = np.where(gold == 1, 0.6, 0.02)
    honest_probs[rng.random(n) < 0.3] = 0.02  # misses some items entirely
    honest = MultiLabelResult("calibrated", ControlRecipe(), honest_probs, gold)
    assert honest.metrics["macro_f1"] > 0 and honest.metrics["micro_f1"] > yes_to_all.metrics["micro_f1"]
    chosen, _, _, p, accepted = select_multilabel(yes_to_all, [honest], alpha=0.05)
    assert accepted and chosen.name == "calibrated" and p < 0.05


def _result(name, gold, flip, rng, confidence=0.8):
    pred = np.where(rng.random(gold.shape) < flip, 1 - gold, gold)
    return MultiLabelResult(name, ControlRecipe(), np.where(pred == 1, confidence, 1 - confidence), gold)


def test_multilabel_selection_accepts_only_a_significantly_better_candidate():
    rng = np.random.default_rng(2)
    gold = (rng.random((150, 5)) < 0.3).astype(int)
    current = _result("current", gold, 0.2, rng)
    worse = _result("worse", gold, 0.35, rng)
    same = MultiLabelResult("same", ControlRecipe(), current.probs.copy(), gold)
    _, _, _, _, accepted = select_multilabel(current, [worse, same], alpha=0.05)
    assert not accepted
    better = _result("better", gold, 0.03, rng)
    chosen, b, c, p, accepted = select_multilabel(current, [worse, better, same], alpha=0.05)
    assert accepted and chosen.name == "better" and p < 0.05 and b > c
    assert (predicted_sets(chosen.probs) == gold).mean() > 0.9


def test_usable_gold_gives_indices_for_single_choice_and_a_matrix_for_multiple_choice():
    from backend.labeling.label_config import ChoiceControl
    from backend.refinement.job import usable_gold
    from backend.store.ground_truth import GoldItem

    gold = [GoldItem(1, {"text": "a"}, {"one": ["x"], "many": ["x", "z"]}, 11, "2026-01-02"),
            GoldItem(2, {"text": "b"}, {"one": ["x", "y"], "many": ["y"]}, 12, "2026-01-01"),
            GoldItem(3, {"text": "c"}, {"many": ["z"]}, 13, "2026-01-03")]
    single = ChoiceControl("one", "text", "text", ("x", "y"), False)
    items, targets = usable_gold(single, gold, 300)
    assert [g.task_id for g in items] == [1] and targets.tolist() == [0]  # two labels on one choice: unusable
    multiple = ChoiceControl("many", "text", "text", ("x", "y", "z"), True)
    items, targets = usable_gold(multiple, gold, 2)
    assert [g.task_id for g in items] == [1, 3]  # the newest two, oldest first
    assert targets.tolist() == [[1, 0, 1], [0, 0, 1]]
