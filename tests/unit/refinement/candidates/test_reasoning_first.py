"""Reasoning candidates: the modes the settings and the engine allow, the pilot that spares a
losing full pass, and the rule that a reasoning candidate must beat the best candidate without
reasoning (pure logic; the real model's rationales are tested in tests/model)."""
import numpy as np
import pytest

from backend.engines.scripted import ScriptedEngine
from backend.labeling.calibration import Calibrator
from backend.labeling.prompt import PromptVersion
from backend.labeling.reasoning import Reasoning
from backend.labeling.recipe import ControlRecipe
from backend.labeling.service import LabelingService
from backend.refinement.candidates.contract import ControlJob
from backend.refinement.candidates.reasoning_first import evaluate_reasoning, reasoning_modes, reasoning_plan
from backend.refinement.selection.optimizer import select_paying
from backend.refinement.validation.control_kind import SINGLE
from backend.refinement.validation.crossval import CandidateResult, PlanSkipped
from backend.settings import Settings
from tests.unit.helpers import sentiment_control as _control


def test_modes_follow_the_settings_and_the_engine():
    engine = ScriptedEngine()
    names = [m.name for m in reasoning_modes(Settings.from_env({"REFINE_REASONING_SAMPLES": "4"}), engine)]
    assert names == ["reason", "reason-x4"]
    assert reasoning_modes(Settings.from_env({"REFINE_REASONING_SAMPLES": "0"}), engine) == []

    class NoRationale:
        pass

    assert reasoning_modes(Settings.from_env({}), NoRationale()) == []


def _result(name, gold, right, reasoning=None, confidence=0.8):
    pred = np.where(right, gold, 1 - gold)
    probs = np.full((len(gold), 2), 1 - confidence)
    probs[np.arange(len(gold)), pred] = confidence
    return CandidateResult(name, ControlRecipe(PromptVersion(reasoning=reasoning)), probs, gold)


# select_paying is selection/optimizer.py's; this test is here because its `_result` (a mask of
# right answers, a reasoning recipe) is not the one tests/unit/refinement/selection/test_optimizer.py uses.
def test_a_reasoning_candidate_must_beat_the_best_fast_one_not_just_the_current():
    rng = np.random.default_rng(4)
    gold = rng.integers(0, 2, 200)
    current = _result("current", gold, rng.random(200) < 0.6)
    fast = _result("8-shot", gold, rng.random(200) < 0.9)
    slow_right = fast.correct.copy()  # a little better than the fast one: 6 more right, 4 fewer
    slow_right[np.flatnonzero(~fast.correct)[:6]] = True
    slow_right[np.flatnonzero(fast.correct)[:4]] = False
    slow = _result("8-shot+reason", gold, slow_right, Reasoning())
    chosen, _, _, _, accepted = select_paying(current, [fast, slow], alpha=0.05)
    assert accepted and chosen.name == "8-shot"
    assert slow.metrics["judged_against"] == "8-shot"
    much = _result("8-shot+reason-x5", gold, np.ones(200, bool), Reasoning(5, temperature=0.7))
    chosen, b, c, p, accepted = select_paying(current, [fast, slow, much], alpha=0.05)
    assert accepted and chosen.name == "8-shot+reason-x5" and p < 0.05 and b > c


def test_a_reasoning_candidate_whose_pilot_loses_is_not_scored_in_full():
    engine = ScriptedEngine(rationales=("bad bad bad",))  # every rationale talks the label into "bad"
    service = LabelingService(engine, calibration="none")
    texts = [("good " if i % 2 else "bad ") + f"item {i}" for i in range(40)]
    gold = np.array([0 if i % 2 else 1 for i in range(40)])
    base = CandidateResult("v0", ControlRecipe(), np.eye(2)[gold] * 0.8 + 0.1, gold)
    folds = np.arange(40) % 5
    with pytest.raises(PlanSkipped, match="pilot"):
        evaluate_reasoning(service, _control(), texts, gold, base, folds, Reasoning(), None)
    scored = len(engine.calls)
    assert scored < 40 + 8  # the pilot and the content-free inputs, not every item

    engine.rationales = ("",)  # a rationale that says nothing: as good as the direct answer here
    before = len(engine.calls)
    plain, fitted = evaluate_reasoning(service, _control(), texts, gold, base, folds, Reasoning(), None)
    assert len(engine.calls) - before == 40  # every item once: the pilot's are not scored again
    assert plain.name == "v0+reason" and fitted.name == "v0+reason+calibrated"
    assert plain.recipe.prompt.reasoning == Reasoning() and plain.metrics["accuracy"] == 1.0


def test_a_pilot_on_few_items_covers_half_of_them_so_that_losing_it_spares_the_rest():
    engine = ScriptedEngine(rationales=("bad bad bad",))
    service = LabelingService(engine, calibration="none")
    texts = [("good " if i % 2 else "bad ") + f"item {i}." for i in range(25)]
    gold = np.array([0 if i % 2 else 1 for i in range(25)])
    base = CandidateResult("v0", ControlRecipe(), np.eye(2)[gold] * 0.8 + 0.1, gold)
    with pytest.raises(PlanSkipped, match="12-item pilot"):
        evaluate_reasoning(service, _control(), texts, gold, base, np.arange(25) % 5, Reasoning(), None)
    assert {t for t in texts if any(t in str(call) for call in engine.calls)} == set(texts[:12])


def test_self_consistency_waits_for_reason_then_select_and_for_time_to_pay_k_times_its_pass():
    service = LabelingService(ScriptedEngine(rationales=("",)), calibration="none")
    texts = [("good " if i % 2 else "bad ") + f"item {i}" for i in range(40)]
    gold = np.array([0 if i % 2 else 1 for i in range(40)])
    current = CandidateResult("current", ControlRecipe(), np.eye(2)[gold] * 0.8 + 0.1, gold)
    folds, x5 = np.arange(40) % 5, Reasoning(5, temperature=0.7)

    def job(results, deadline):
        return ControlJob(service, _control(), SINGLE, texts, gold, folds, np.zeros((40, 2)), ControlRecipe(), current,
                          np.zeros((40, 2)), Calibrator.identity(2), 0, deadline, results=results)

    with pytest.raises(PlanSkipped, match="not scored in full"):
        reasoning_plan(job([], 1e9), x5)
    results = reasoning_plan(job([], 1e9), Reasoning())
    for r in results:
        r.metrics["seconds"] = 100.0
    with pytest.raises(PlanSkipped, match="about 500 s, 400 s past"):
        reasoning_plan(job(results, 100.0), x5, clock=lambda: 0.0)
    sc = reasoning_plan(job(results, 1e9), x5)
    assert [r.name for r in sc] == ["v0+reason-x5", "v0+reason-x5+calibrated"]  # named by the prompt
