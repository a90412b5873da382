"""Reason-then-select and self-consistency: prompt, pooling of samples, storage, and the rule that a
reasoning candidate must beat the best candidate without reasoning (pure logic; the real model's
rationales are tested in tests/model)."""
import json

import numpy as np
import pytest

from backend.engines.scripted import ScriptedEngine
from backend.labeling.calibration import softmax
from backend.labeling.label_config import parse_label_config
from backend.labeling.prompt import Demo, PromptVersion, render
from backend.labeling.reasoning import REASONING_HINT, Reasoning, clean_rationale, pool_samples
from backend.labeling.recipe import ControlRecipe
from backend.labeling.service import LabelingService
from backend.refinement.candidates.reasoning_first import evaluate_reasoning, reasoning_modes
from backend.refinement.selection.optimizer import select_paying
from backend.refinement.validation.crossval import CandidateResult, PlanSkipped
from backend.settings import Settings

CONFIG = """<View><Text name="text" value="$text"/>
<Choices name="sentiment" toName="text"><Choice value="good"/><Choice value="bad"/></Choices></View>"""


def _control():
    return parse_label_config(CONFIG).controls[0]


def test_a_reasoning_prompt_asks_for_a_rationale_and_scores_the_labels_after_it():
    version = PromptVersion(demos=(Demo("fine", ("good",)),), reasoning=Reasoning())
    rendered = render(_control(), version)
    assert REASONING_HINT in rendered.prefix.split("\n\n")[0]
    assert "Text: fine\nLabel: good" in rendered.prefix  # demonstrations keep their plain form
    assert rendered.rationale_item("so so") == "Text: so so\nReasoning:"
    assert rendered.with_rationale("it says so.").item("so so") == "Text: so so\nReasoning: it says so.\nLabel:"
    assert REASONING_HINT not in render(_control(), PromptVersion()).prefix


def test_the_rationale_is_one_line():
    assert clean_rationale("  it is  good.\nLabel: bad\nText: x") == "it is good."


def test_samples_are_pooled_as_the_mean_distribution():
    a, b = np.log([0.9, 0.1]), np.log([0.3, 0.7])
    pooled = pool_samples([a, b], multiple=False)
    assert np.allclose(np.exp(pooled), [0.6, 0.4])
    assert np.allclose(softmax(pooled), [0.6, 0.4])
    yes = pool_samples([np.array([np.log(0.8 / 0.2)]), np.array([np.log(0.4 / 0.6)])], multiple=True)
    assert np.allclose(1 / (1 + np.exp(-yes)), [0.6])
    assert np.array_equal(pool_samples([a], multiple=False), a)


def test_self_consistency_averages_what_each_rationale_leads_to():
    """The scripted engine scores a label by how often its word is in the item, rationale included."""
    engine = ScriptedEngine(rationales=("good good", "bad"))
    service = LabelingService(engine, calibration="none")
    control = _control()
    direct = service.logits(control, PromptVersion(), "plain text")[0]
    one = service.logits(control, PromptVersion(reasoning=Reasoning(1)), "plain text")[0]
    two = service.logits(control, PromptVersion(reasoning=Reasoning(2, temperature=0.7)), "plain text")[0]
    assert softmax(direct)[0] == pytest.approx(0.5)
    assert softmax(one)[0] > 0.98  # "good good" in the rationale
    p_bad_sample = softmax(np.array([-3.0, -1.0]))  # after "bad"
    assert np.allclose(softmax(two), (softmax(one) + p_bad_sample) / 2)


def test_a_reasoning_recipe_round_trips_and_bad_settings_are_refused():
    recipe = ControlRecipe(PromptVersion(name="v3", reasoning=Reasoning(5, 32, 0.7)))
    again = ControlRecipe.from_dict(json.loads(json.dumps(recipe.to_dict())))
    assert again == recipe
    assert "reasoning" not in ControlRecipe().to_dict()["prompt"]
    for bad in ({"samples": 0}, {"samples": 3, "temperature": 0}, {"max_tokens": 10_000}):
        with pytest.raises(ValueError, match="reasoning"):
            Reasoning.from_dict(bad)


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


def test_self_consistency_waits_for_reason_then_select_and_for_time_to_pay_k_times_its_pass():
    from backend.refinement.selection.optimizer import _reasoning_plan

    service = LabelingService(ScriptedEngine(rationales=("",)), calibration="none")
    texts = [("good " if i % 2 else "bad ") + f"item {i}" for i in range(40)]
    gold = np.array([0 if i % 2 else 1 for i in range(40)])
    current = CandidateResult("current", ControlRecipe(), np.eye(2)[gold] * 0.8 + 0.1, gold)
    folds, x5 = np.arange(40) % 5, Reasoning(5, temperature=0.7)
    with pytest.raises(PlanSkipped, match="not scored in full"):
        _reasoning_plan(service, _control(), texts, gold, folds, x5, [], current, deadline=1e9)
    results = _reasoning_plan(service, _control(), texts, gold, folds, Reasoning(), [], current, deadline=1e9)
    for r in results:
        r.metrics["seconds"] = 100.0
    with pytest.raises(PlanSkipped, match="about 500 s, 400 s past"):
        _reasoning_plan(service, _control(), texts, gold, folds, x5, results, current, deadline=100.0,
                        clock=lambda: 0.0)
    sc = _reasoning_plan(service, _control(), texts, gold, folds, x5, results, current, deadline=1e9)
    assert [r.name for r in sc] == ["v0+reason-x5", "v0+reason-x5+calibrated"]  # named by the prompt


def test_a_prediction_of_a_reasoning_version_carries_its_rationales():
    from backend.labeling.prediction import to_region

    service = LabelingService(ScriptedEngine(rationales=("good good", "bad")), calibration="none")
    recipe = ControlRecipe(PromptVersion(reasoning=Reasoning(2, temperature=0.7)))
    ((pred, _),) = service.predict_control(_control(), recipe, ["plain text"])
    assert to_region(pred)["rationales"] == ["good good", "bad"]
    ((plain, _),) = service.predict_control(_control(), ControlRecipe(), ["plain text"])
    assert "rationales" not in to_region(plain)
