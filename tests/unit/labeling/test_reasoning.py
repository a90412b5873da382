"""Reason-then-select and self-consistency, the parts a version serves with: the rationale, how
samples are pooled, storage (pure logic; the real model's rationales are tested in tests/model)."""
import json

import numpy as np
import pytest

from backend.labeling.calibration import softmax
from backend.labeling.prompt import Demo, PromptVersion, render
from backend.labeling.reasoning import REASONING_HINT, Reasoning, clean_rationale, pool_samples
from backend.labeling.recipe import ControlRecipe
from tests.unit.helpers import sentiment_control as _control


# Rendered by labeling/prompt.py; here because tests/unit/labeling/test_prompt.py has a `_control`
# of its own (labels as arguments).
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


def test_a_reasoning_recipe_round_trips_and_bad_settings_are_refused():
    recipe = ControlRecipe(PromptVersion(name="v3", reasoning=Reasoning(5, 32, 0.7)))
    again = ControlRecipe.from_dict(json.loads(json.dumps(recipe.to_dict())))
    assert again == recipe
    assert "reasoning" not in ControlRecipe().to_dict()["prompt"]
    for bad in ({"samples": 0}, {"samples": 3, "temperature": 0}, {"max_tokens": 10_000}):
        with pytest.raises(ValueError, match="reasoning"):
            Reasoning.from_dict(bad)
