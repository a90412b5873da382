"""A control's recipe survives the version JSON: nearest-demo pools, per-label calibrators."""
import json

import numpy as np

from backend.labeling.calibration import Calibrator, sigmoid
from backend.labeling.prompt import DEMO_MAX_CHARS, PromptVersion
from backend.labeling.recipe import ControlRecipe
from backend.refinement.candidates.few_shot import demo_pool, nearest_shot


def test_a_pool_survives_the_version_json_and_demo_texts_are_clipped():
    pool = demo_pool(["goal " * 300, "vote"], [0, 1], ["Positive", "Negative"])
    assert len(pool[0].text) <= DEMO_MAX_CHARS
    recipe = ControlRecipe(nearest_shot(PromptVersion(instructions="x"), pool, 3, "3-nearest"))
    again = ControlRecipe.from_dict(recipe.to_dict())
    assert again == recipe and again.prompt.nearest == 3 and again.prompt.shared.pool == ()


def test_a_per_label_calibrator_round_trips_through_version_json():
    cal = Calibrator((0.1, -2.0), (1.5, 0.8), "fitted-per-label")
    again = ControlRecipe.from_dict(json.loads(json.dumps(ControlRecipe(calibrator=cal).to_dict())))
    assert again.calibrator == cal
    np.testing.assert_allclose(again.calibrator.apply(np.array([[1.0, 1.0]]), True), sigmoid([[1 / 1.5 + 0.1, 1 / 0.8 - 2.0]]))
