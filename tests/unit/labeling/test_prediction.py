import json

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from backend.engines.scripted import ScriptedEngine
from backend.errors import EngineError
from backend.labeling.label_config import ChoiceControl
from backend.labeling.prediction import decide, to_ls_prediction
from backend.labeling.prompt import PromptVersion
from backend.labeling.reasoning import Reasoning
from backend.labeling.recipe import ControlRecipe
from backend.labeling.service import LabelingService
from tests.strategies import PROPERTY_SETTINGS, characters
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


@pytest.mark.parametrize(
    "control, probs, says",
    [
        (SINGLE, [float("nan"), 0.5], "not finite"),
        (MULTI, [0.2, float("inf"), 0.1], "not finite"),
        (SINGLE, [-0.2, 1.2], "outside [0, 1]"),
        (SINGLE, [0.2, 0.3, 0.5], "for 2 labels"),
        (ChoiceControl("empty", "text", "text", (), True), [], "for 0 labels"),
    ],
)
def test_unusable_probabilities_are_a_named_engine_error(control, probs, says):
    with pytest.raises(EngineError) as err:
        decide(control, np.array(probs), np.array(probs))
    assert says in err.value.message and control.name in err.value.message


def test_rounding_noise_outside_0_1_is_clipped():
    pred = decide(SINGLE, np.array([1 + 1e-9, -1e-9]), np.array([0.5, 0.5]))
    assert pred.probabilities == (1.0, 0.0) and pred.score == 1.0


_labels = st.lists(st.text(characters, min_size=1, max_size=6), max_size=5, unique=True)
_probability = st.one_of(st.floats(0, 1), st.floats(allow_nan=True, allow_infinity=True),
                         st.sampled_from([0.0, 1.0, 0.5, -0.0, 1 + 1e-9, -1e-9, float("nan")]))


@st.composite
def _control_and_probabilities(draw):
    labels = tuple(draw(_labels))
    control = ChoiceControl("c", "text", "text", labels, draw(st.booleans()))
    size = st.integers(0, 6) if draw(st.integers(0, 8)) == 4 else st.just(len(labels))  # a wrong length, rarely
    probs = draw(size.flatmap(lambda n: st.lists(_probability, min_size=n, max_size=n)))
    raw = draw(st.lists(st.floats(0, 1), min_size=len(labels), max_size=len(labels)))
    return control, probs, raw


@settings(**PROPERTY_SETTINGS)
@given(_control_and_probabilities())
def test_any_probability_vector_gives_a_valid_prediction_or_a_named_error(case):
    """NaN, ±inf, negatives, wrong lengths, any label set: either a prediction Label Studio accepts
    (strict JSON, known labels, one label for single choice, a score in [0, 1]) or an EngineError."""
    control, probs, raw = case
    try:
        item = to_ls_prediction([decide(control, np.array(probs, dtype=float), np.array(raw))], "m.v0", [])
    except EngineError as exc:
        assert exc.code == "engine_error" and control.name in exc.message
        return
    json.dumps(item, allow_nan=False)
    (region,) = item["result"]
    assert (region["from_name"], region["to_name"], region["type"]) == ("c", "text", "choices")
    chosen = region["value"]["choices"]
    assert chosen and set(chosen) <= set(control.labels) and len(set(chosen)) == len(chosen)
    assert len(chosen) == 1 or control.multiple
    assert 0 <= item["score"] <= 1 and 0 <= region["score"] <= 1
    assert all(0 <= p <= 1 for p in region["probabilities"].values())


def test_a_rating_region_names_the_most_probable_star_and_the_expected_rating():
    stars = ChoiceControl("quality", "text", "text", ("1", "2", "3"), False, kind="rating")
    pred = decide(stars, np.array([0.2, 0.3, 0.5]), np.array([0.3, 0.3, 0.4]))
    item = to_ls_prediction([pred], "m.v1", [])
    (region,) = item["result"]
    assert (region["type"], region["value"]) == ("rating", {"rating": 3})
    assert region["expected_rating"] == pytest.approx(0.2 + 0.6 + 1.5)
    assert region["score"] == item["score"] == pytest.approx(0.5)
    assert region["probabilities"] == {"1": 0.2, "2": 0.3, "3": 0.5}
    json.dumps(item, allow_nan=False)


def test_a_taxonomy_region_stores_the_chosen_path_with_its_ancestors():
    geo = ChoiceControl("geo", "text", "text", ("Europe", "Europe / Spain"), False, kind="taxonomy",
                        paths=(("Europe",), ("Europe", "ES")))
    (region,) = to_ls_prediction([decide(geo, np.array([0.4, 0.6]), np.array([0.5, 0.5]))], "m.v1", [])["result"]
    assert (region["type"], region["value"], region["score"]) == ("taxonomy", {"taxonomy": [["Europe", "ES"]]}, 0.6)


def test_a_reasoning_version_writes_its_rationale_into_the_configs_text_area():
    from backend.labeling.label_config import parse_label_config
    from backend.labeling.model_version import ModelVersion
    from backend.labeling.service import extract_texts

    label_task = parse_label_config(
        '<View><Text name="text" value="$text"/><Choices name="sentiment" toName="text"><Choice value="Positive"/>'
        '<Choice value="Negative"/></Choices><TextArea name="why" toName="text"/></View>')
    assert [t.name for t in label_task.text_areas] == ["why"] and not label_task.skipped
    service = LabelingService(ScriptedEngine(rationales=("it praises the food",)), calibration="none")
    items = extract_texts([{"data": {"text": "good"}}], label_task, 1000)
    reasoning = ModelVersion("m.v2", 2, controls={"sentiment": ControlRecipe(PromptVersion(reasoning=Reasoning(1)))})
    (item,) = service.predict(items, label_task, reasoning)
    choice, why = item["result"]
    assert why == {"from_name": "why", "to_name": "text", "type": "textarea", "value": {"text": ["it praises the food"]}}
    assert item["score"] == choice["score"]  # the rationale is not a scored answer
    (plain,) = service.predict(items, label_task, ModelVersion("m.v0"))
    assert [r["type"] for r in plain["result"]] == ["choices"]  # no rationale, no text area region


def test_with_two_reasoning_controls_each_line_of_the_text_area_names_its_control():
    from backend.labeling.label_config import TextAreaTarget
    from backend.labeling.prediction import rationale_regions

    one, two = (decide(c, np.array([0.5] * len(c.labels)), np.array([0.5] * len(c.labels)), rationales=(r,))
                for c, r in ((SINGLE, "because"), (MULTI, "since")))
    (region,) = rationale_regions([one, two], (TextAreaTarget("why", "text"), TextAreaTarget("other", "image")))
    assert region["value"]["text"] == ["sentiment: because", "topics: since"]
