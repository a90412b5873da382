"""Cross-validation's pure parts: balanced folds, the time budget (a pass stops between chunks
when the rest would end after the deadline), and a multi-choice candidate's fitted threshold."""
import numpy as np
import pytest

from backend.engines.scripted import ScriptedEngine
from backend.labeling.label_config import parse_label_config
from backend.labeling.prompt import PromptVersion
from backend.labeling.service import LabelingService
from backend.labeling.recipe import ControlRecipe
from backend.refinement.validation.crossval import (PACE_CHUNK, CandidateResult, OverBudget, fold_ids, logits_matrix,
                                                    pace_budget, paced_logits)
from tests.unit.helpers import Clock

CONTROL = parse_label_config(
    '<View><Text name="text" value="$text"/><Choices name="label" toName="text">'
    '<Choice value="spam"/><Choice value="ham"/></Choices></View>').controls[0]
TEXTS = [f"message {i} " + ("spam spam" if i % 3 == 0 else "ham") for i in range(30)]  # oldest first
PROMPT = PromptVersion(name="v0")


def test_a_plan_stops_after_the_chunk_that_shows_the_rest_would_overrun():
    clock = Clock()
    after = pace_budget(deadline=100.0, total=5, unit="folds", clock=clock)
    clock.now = 15.0
    after(1)  # 15 s a fold: 4 more end at 75 s, inside the budget
    clock.now = 42.0
    with pytest.raises(OverBudget, match="2/5 folds"):
        after(2)  # 21 s a fold now: 3 more would end at 105 s


def test_no_deadline_nothing_done_yet_and_the_last_chunk_never_stop_a_plan():
    clock = Clock()
    unlimited = pace_budget(deadline=None, total=2, clock=clock)
    clock.now = 1e9
    unlimited(1)
    started = pace_budget(deadline=10.0, total=3, clock=clock)
    clock.now += 50.0
    started(0)  # no pace known yet
    started(3)  # the work is done: keep it


class SecondPerText(ScriptedEngine):
    """Scoring one text takes a second of the test's clock."""

    def __init__(self, clock):
        super().__init__()
        self.clock = clock

    def score(self, prefix, item, branches):
        self.clock.now += 1.0
        return super().score(prefix, item, branches)


def test_the_current_pass_keeps_the_newest_items_it_scored_before_its_time_was_up():
    clock = Clock()
    engine = SecondPerText(clock)
    logits, used, pace, _ = paced_logits(LabelingService(engine), CONTROL, PROMPT, TEXTS, stop_at=12.0, partial=True,
                                      clock=clock)
    # a chunk ends at 8 s (go on), the next at 16 s (past 12 s: stop)
    assert used.tolist() == [False] * (30 - 2 * PACE_CHUNK) + [True] * (2 * PACE_CHUNK)
    assert len(engine.calls) == 2 * PACE_CHUNK and pace == 1.0
    everything = logits_matrix(LabelingService(ScriptedEngine()), CONTROL, PROMPT, TEXTS)
    assert np.array_equal(logits[used], everything[used])


def test_another_pass_stops_as_soon_as_its_pace_says_it_would_end_after_the_deadline():
    clock = Clock()
    engine = SecondPerText(clock)
    with pytest.raises(OverBudget, match=f"{PACE_CHUNK}/30 items"):
        paced_logits(LabelingService(engine), CONTROL, PROMPT, TEXTS, 20.0, partial=False, clock=clock)  # 30 s in all
    assert len(engine.calls) == PACE_CHUNK

    clock.now = 0.0
    logits, scored, _, _ = paced_logits(LabelingService(SecondPerText(clock)), CONTROL, PROMPT, TEXTS, 31.0,
                                     partial=False, clock=clock)
    assert scored.all() and logits.shape == (30, 2)


def test_fold_ids_are_balanced():
    folds = fold_ids(103, 5)
    assert sorted(np.bincount(folds)) == [20, 20, 21, 21, 21]


def test_a_fitted_threshold_is_kept_only_where_it_beats_the_candidates_own_rule_on_held_out_items():
    from backend.refinement.validation.control_kind import MULTIPLE

    rng = np.random.default_rng(0)
    n, k = 300, 12
    gold = np.zeros((n, k), dtype=int)
    gold[np.arange(n), rng.integers(0, k, n)] = 1
    gold[rng.random((n, k)) < 0.08] = 1  # some items have a second or third label
    shy = np.clip(np.where(gold == 1, 0.3, 0.04) + rng.normal(0, 0.05, (n, k)), 0.01, 0.99)  # calibrated-shy
    folds = fold_ids(n, 5)
    fitted = CandidateResult("shy", ControlRecipe(), shy, gold, kind=MULTIPLE).with_threshold(folds)
    assert 0.04 < fitted.recipe.threshold < 0.3 and fitted.metrics["threshold"] == fitted.recipe.threshold
    assert fitted.metrics["micro_f1"] > CandidateResult("shy", ControlRecipe(), shy, gold, kind=MULTIPLE).metrics["micro_f1"]
    sure = np.clip(np.where(gold == 1, 0.9, 0.05) + rng.normal(0, 0.02, (n, k)), 0.01, 0.99)
    kept = CandidateResult("sure", ControlRecipe(), sure, gold, kind=MULTIPLE)
    assert kept.with_threshold(folds) is kept and kept.recipe.threshold is None and kept.metrics["threshold"] == 0.5


def test_a_chosen_content_free_candidate_gets_a_temperature_that_changes_no_label():
    """A prompt whose content-free calibrated answers are far too sure: served with a temperature
    fitted after that calibration, it keeps every label and its p-values, has a lower cross-fitted
    log-loss, and ships a calibrator that gives on raw logits what was judged; a refresh refits
    the temperature around the prompt's content-free bias again."""
    from backend.labeling.calibration import TEMPERED, Calibrator
    from backend.refinement.validation.control_kind import SINGLE
    from backend.refinement.validation.crossval import with_fitted_temperature

    rng = np.random.default_rng(0)
    n = 120
    gold = rng.integers(0, 2, n)
    logits = np.stack([(gold == 0) * 1.0, (gold == 1) * 1.0], axis=1) + rng.normal(0, 1.0, (n, 2))
    logits *= 6.0  # overconfident: right about 3 in 4, sure of nearly everything
    prior = Calibrator((0.4, -0.4), method="contextual")
    contextual = prior.apply(logits, False)
    folds = fold_ids(n, 5)
    plain = CandidateResult("8-shot", ControlRecipe(PROMPT, None), contextual, gold)
    plain.metrics["p_vs_current"] = 0.001
    result = with_fitted_temperature(plain, prior, folds)
    assert (result.probs.argmax(1) == contextual.argmax(1)).all()
    assert result.metrics["macro_f1"] == plain.metrics["macro_f1"] and result.metrics["p_vs_current"] == 0.001
    assert result.item_loss.mean() < plain.item_loss.mean() - 0.1 and result.metrics["ece"] < plain.metrics["ece"]
    shipped = result.recipe.calibrator
    assert shipped.method == TEMPERED and shipped.temperature > 2
    assert result.metrics["fitted_temperature"] == round(shipped.temperature, 3)
    expected = contextual ** (1 / shipped.temperature)
    assert np.allclose(shipped.apply(logits, False), expected / expected.sum(1, keepdims=True))
    assert ControlRecipe.from_dict(result.recipe.to_dict()).calibrator == shipped  # stored with the version

    refit = SINGLE.calibration_fit(shipped, prior)(logits[:60], gold[:60])
    assert refit.method == TEMPERED and refit.bias[0] > 0  # still the content-free bias's sign, not none
    assert SINGLE.calibration_fit(shipped, None) is None  # without the prompt's bias there is nothing to refit around
    assert with_fitted_temperature(plain, Calibrator.identity(2), folds) is plain  # CALIBRATION=none: nothing fitted
    assert with_fitted_temperature(result, prior, folds) is result  # a fitted calibrator already


def test_a_well_calibrated_candidate_is_left_as_it_was():
    from backend.labeling.calibration import Calibrator
    from backend.refinement.validation.crossval import with_fitted_temperature

    rng = np.random.default_rng(1)
    n = 200
    probs = rng.dirichlet([1.0, 1.0], n)
    gold = (rng.random(n) < probs[:, 1]).astype(int)  # labels drawn from the probabilities: calibrated
    plain = CandidateResult("4-shot", ControlRecipe(PROMPT, None), probs, gold)
    assert with_fitted_temperature(plain, Calibrator((0.0, 0.0), method="contextual"), fold_ids(n, 5)) is plain
