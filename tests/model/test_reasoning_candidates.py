"""A reasoning candidate scored in full on the real embedded model: the pilot, the pass as it
would ship (a demonstration item scored without its own demonstration), both calibrations, and
a recipe that serves the same probabilities it was judged with."""
import numpy as np
import pytest

from backend.evaluation.datasets import load_dataset
from backend.labeling.label_config import parse_label_config
from backend.labeling.prompt import PromptVersion
from backend.labeling.reasoning import Reasoning
from backend.labeling.recipe import ControlRecipe
from backend.labeling.service import LabelingService
from backend.refinement.candidates.few_shot import demos_of
from backend.refinement.candidates.reasoning_first import PILOT_ITEMS, evaluate_reasoning
from backend.refinement.validation.crossval import CandidateResult, fold_ids
from tests.conftest import DATASETS

pytestmark = pytest.mark.model

N = 20


def test_a_reasoning_candidate_is_scored_as_it_would_ship(engine):
    data = load_dataset(DATASETS / "sentence_polarity" / "train.jsonl", limit=N)
    control = parse_label_config(data.label_config()).controls[0]
    texts, gold = list(data.texts), np.array(data.gold)
    prompt = PromptVersion(name="2-shot", demos=demos_of(texts, gold, data.labels, [0, 1]))
    # a base candidate that is never right: the pilot cannot lose to it, so the full pass runs
    never = np.eye(len(data.labels))[1 - gold] * 0.9 + 0.05
    base = CandidateResult("2-shot", ControlRecipe(prompt), never, gold)
    service = LabelingService(engine)
    plain, fitted = evaluate_reasoning(service, control, texts, gold, base, fold_ids(N, 5), Reasoning(1, 24), None)

    assert plain.name == "2-shot+reason" and fitted.name == "2-shot+reason+calibrated"
    assert plain.recipe.prompt.reasoning == Reasoning(1, 24) and plain.recipe.prompt.demos == prompt.demos
    assert fitted.recipe.calibrator is not None and fitted.recipe.calibrator.method == "fitted"
    assert plain.probs.shape == (N, 2) and np.allclose(plain.probs.sum(1), 1)
    # items beyond the pilot (the first non-demonstration items) are scored too, and an item that
    # is not a demonstration is judged with the probabilities the recipe serves
    assert min(PILOT_ITEMS, N // 2) + 2 < N - 2
    served = service.predict_control(control, plain.recipe, texts[N - 2:])
    np.testing.assert_allclose([p.probabilities for p, _ in served], plain.probs[N - 2:], atol=1e-9)
    # a demonstration item is judged without its own demonstration, so not as the recipe serves it
    shown_own = service.predict_control(control, plain.recipe, texts[:1])[0][0].probabilities
    assert not np.allclose(shown_own, plain.probs[0])
