import numpy as np
import pytest

from backend.engines.scripted import ScriptedEngine
from backend.labeling.label_config import ChoiceControl
from backend.labeling.prediction import decide, to_ls_prediction
from backend.labeling.prompt import PromptVersion
from backend.labeling.reasoning import Reasoning
from backend.labeling.recipe import ControlRecipe
from backend.labeling.service import LabelingService
from tests.unit.helpers import sentiment_control as _control

SINGLE = ChoiceControl("sentiment", "text", "text", ("Positive", "Negative"), False)
MULTI = ChoiceControl("topics", "text", "text", ("a", "b", "c"), True)


def test_single_choice_picks_the_argmax_and_scores_its_probability():
    pred = decide(SINGLE, np.array([0.3, 0.7]), np.array([0.6, 0.4]))
    assert pred.chosen == ("Negative",)
    assert pred.score == pytest.approx(0.7)


def test_multi_choice_score_is_the_probability_of_exactly_the_predicted_set():
    pred = decide(MULTI, np.array([0.9, 0.2, 0.6]), np.array([0.5, 0.5, 0.5]))
    assert pred.chosen == ("a", "c")
    assert pred.score == pytest.approx(0.9 * 0.8 * 0.6)


def test_multi_choice_never_predicts_an_empty_set():
    pred = decide(MULTI, np.array([0.1, 0.4, 0.2]), np.array([0.1, 0.4, 0.2]))
    assert pred.chosen == ("b",)


def test_ls_prediction_shape_matches_the_captured_contract():
    a = decide(SINGLE, np.array([0.8, 0.2]), np.array([0.5, 0.5]))
    b = decide(MULTI, np.array([0.9, 0.1, 0.1]), np.array([0.5, 0.5, 0.5]))
    item = to_ls_prediction([a, b], "m.v0", [])
    assert item["model_version"] == "m.v0"
    assert item["score"] == pytest.approx(0.8 * 0.9 * 0.9 * 0.9, abs=1e-6)
    region = item["result"][0]
    assert {k: region[k] for k in ("from_name", "to_name", "type", "value")} == {
        "from_name": "sentiment", "to_name": "text", "type": "choices", "value": {"choices": ["Positive"]}
    }
    assert region["probabilities"] == {"Positive": 0.8, "Negative": 0.2}
    assert "warnings" not in item


def test_a_prediction_of_a_reasoning_version_carries_its_rationales():
    from backend.labeling.prediction import to_region

    service = LabelingService(ScriptedEngine(rationales=("good good", "bad")), calibration="none")
    recipe = ControlRecipe(PromptVersion(reasoning=Reasoning(2, temperature=0.7)))
    ((pred, _),) = service.predict_control(_control(), recipe, ["plain text"])
    assert to_region(pred)["rationales"] == ["good good", "bad"]
    ((plain, _),) = service.predict_control(_control(), ControlRecipe(), ["plain text"])
    assert "rationales" not in to_region(plain)
