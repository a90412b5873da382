"""Fixed k-shot candidates: the demo draw, and judging them as they ship: one draw of demos, each
demo item scored without itself."""
import numpy as np

from backend.evaluation.datasets import Dataset
from backend.labeling.label_config import parse_label_config
from backend.labeling.prompt import PromptVersion
from backend.refinement.candidates.few_shot import demos_of, evaluate_few_shot, pick_demo_indices
from backend.refinement.validation.crossval import fold_ids
from tests.unit.helpers import RecordingService


def test_every_item_is_scored_by_the_prompt_that_ships_except_its_own_demo():
    labels = ("ham", "spam")
    control = parse_label_config(Dataset("t", labels, ("a",), (0,)).label_config()).controls[0]
    rng = np.random.default_rng(0)
    gold = rng.integers(0, 2, 30)
    texts = [f"message {i}" for i in range(30)]
    service = RecordingService(list(labels))
    plain, fitted = evaluate_few_shot("4-shot", PromptVersion(name="base"), service, control, texts, gold,
                                      fold_ids(30, 5), 4)
    picked = pick_demo_indices(gold, 4, seed=30)
    shipped = demos_of(texts, gold, labels, picked)
    assert plain.recipe.prompt.demos == shipped == fitted.recipe.prompt.demos
    scored_by = {text: demos for demos, text in service.calls}
    assert len(service.calls) == 30  # each item once
    for i, text in enumerate(texts):
        if i in picked:
            assert text not in {d.text for d in scored_by[text]} and len(scored_by[text]) == 3
        else:
            assert scored_by[text] == shipped
    # the fake copies a demo's label when it sees its own text: no item may profit from that
    assert np.allclose(plain.probs, 0.5)


def test_demo_draw_covers_every_label_and_is_reproducible():
    texts = [f"t{i}" for i in range(30)]
    gold = [0] * 25 + [1] * 4 + [2]
    demos = demos_of(texts, gold, ["a", "b", "c"], pick_demo_indices(gold, 6, seed=3))
    assert len(demos) == 6
    assert {d.labels[0] for d in demos} == {"a", "b", "c"}
    assert demos == demos_of(texts, gold, ["a", "b", "c"], pick_demo_indices(gold, 6, seed=3))
