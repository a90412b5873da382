"""Span learning without a model: which gold items a <Labels> control learns from, the
calibration of span scores, and how the typing head's setting is chosen."""
import numpy as np

from backend.labeling.label_config import SpanControl
from backend.labeling.spans import Span, SpanPrompt
from backend.refinement.span_learning import (TypingSetting, _calibration_decision, cross_chosen_typing,
                                              fit_span_calibration, gold_demo, usable_span_gold)
from backend.store.ground_truth import GoldItem

CONTROL = SpanControl("ner", "text", "text", ("PER", "LOC"))


def test_usable_gold_annotates_the_control_with_labels_it_still_has():
    items = [GoldItem(1, {"text": "Alice in Paris"}, {}, 11, "b", {"ner": [[0, 5, "PER"], [9, 14, "LOC"]]}),
             GoldItem(2, {"text": "nothing"}, {}, 12, "a", {"ner": []}),
             GoldItem(3, {"text": "Bob at Acme"}, {}, 13, "c", {"ner": [[7, 11, "ORG"]]}),  # a label since removed
             GoldItem(4, {"text": "a choice only"}, {"tone": ["x"]}, 14, "d")]
    usable = usable_span_gold(CONTROL, items, newest=10)
    assert [g.task_id for g in usable] == [2, 1]  # oldest first
    assert gold_demo(CONTROL, usable[1]).entities == (("Alice", "PER"), ("Paris", "LOC"))
    assert [g.task_id for g in usable_span_gold(CONTROL, items, newest=1)] == [1]


def _overconfident(n: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Scores near 0.8-0.99 of which only about a third are right, more often the higher ones."""
    rng = np.random.default_rng(seed)
    scores = rng.uniform(0.8, 0.99, n)
    right = rng.random(n) < (scores - 0.75) * 2
    return scores, right


def test_platt_scaling_brings_overconfident_scores_down_and_keeps_their_order():
    scores, right = _overconfident(400)
    a, b = fit_span_calibration(scores, right)
    calibrated = np.array([SpanPrompt(calibration=(a, b)).calibrated(s) for s in scores])
    assert a > 0 and abs(calibrated.mean() - right.mean()) < 0.05
    assert (np.diff(calibrated[np.argsort(scores)]) >= 0).all()
    assert fit_span_calibration(scores[:5], right[:5]) is None  # too few spans
    assert fit_span_calibration(scores, np.ones_like(right)) is None  # nothing to tell apart


def test_a_calibration_is_adopted_only_when_it_helps_spans_it_was_not_fitted_on():
    scores, right = _overconfident(300)
    spans = [(i // 3, s, r) for i, (s, r) in enumerate(zip(scores, right))]
    calibration, info = _calibration_decision(SpanPrompt(), spans, SpanPrompt(), alpha=0.05)
    assert calibration is not None and info["log_loss_gain"] > 0 and info["held_out_ece"] < info["ece_before"]
    honest = [(i, 0.5, bool(i % 2)) for i in range(300)]  # already honest: nothing to gain
    kept, _ = _calibration_decision(SpanPrompt(), honest, SpanPrompt(calibration=(1.0, 0.0)), alpha=0.05)
    assert kept == (1.0, 0.0)


def test_the_typing_setting_of_each_fold_is_chosen_on_the_other_folds_and_the_best_on_all_ships():
    folds = np.array([0, 0, 0, 1, 1, 2, 2, 2])
    golds = [[(0, 5, "PER")] for _ in folds]
    a, b = TypingSetting("mention", True), TypingSetting("context", True)
    right = {a: {0, 2}, b: {0, 1}}  # the folds each setting types right

    def spans(setting):
        return [[Span(0, 5, "Alice", "PER" if f in right[setting] else "LOC", 0.9, (0.9, 0.05, 0.05))] for f in folds]

    out, shipped = cross_chosen_typing({a: spans(a), b: spans(b)}, golds, folds)
    # fold 0: a (3 of 5 right elsewhere) over b (2 of 5); fold 1: a (6 of 6) although b is right there;
    # fold 2: b (5 of 5 elsewhere); on all texts a is right on 6, b on 5
    assert [s[0].label for s in out] == ["PER"] * 3 + ["LOC"] * 2 + ["LOC"] * 3
    assert shipped == a
