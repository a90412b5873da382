"""Fixed k-shot candidates: the demo draw, and judging them as they ship: one draw of demos, each
demo item scored without itself."""
import numpy as np

from backend.evaluation.datasets import Dataset
from backend.labeling.label_config import parse_label_config
from backend.labeling.prompt import PromptVersion
from backend.refinement.candidates.few_shot import (demos_of, evaluate_few_shot, multilabel_demos_of, pick_demo_indices,
                                                    pick_multilabel_demo_indices)
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


def test_label_balanced_demos_show_rare_labels_and_are_reproducible():
    texts = [f"t{i}" for i in range(40)]
    gold = np.zeros((40, 4), dtype=int)
    gold[:30, 0] = 1
    gold[30:36, 1] = 1
    gold[36:39, 2] = 1
    gold[39, [0, 3]] = 1
    demos = multilabel_demos_of(texts, gold, ["a", "b", "c", "d"], pick_multilabel_demo_indices(gold, 4, seed=3))
    assert len(demos) == 4
    assert {label for d in demos for label in d.labels} == {"a", "b", "c", "d"}
    assert ("a", "d") in [d.labels for d in demos]  # an item keeps its whole label set
    assert demos == multilabel_demos_of(texts, gold, ["a", "b", "c", "d"], pick_multilabel_demo_indices(gold, 4, seed=3))


def test_multi_choice_few_shot_is_judged_the_same_way():
    labels = ("joy", "anger", "fear")
    config = ('<View><Text name="text" value="$text"/><Choices name="label" toName="text" choice="multiple">'
              + "".join(f'<Choice value="{label}"/>' for label in labels) + "</Choices></View>")
    control = parse_label_config(config).controls[0]
    rng = np.random.default_rng(1)
    gold = (rng.random((24, 3)) < 0.4).astype(np.int8)
    gold[gold.sum(1) == 0, 0] = 1
    texts = [f"post {i}" for i in range(24)]
    service = RecordingService(list(labels))
    plain, fitted = evaluate_few_shot("4-shot", PromptVersion(name="base"), service, control, texts, gold,
                                      fold_ids(24, 4), 4)
    picked = pick_multilabel_demo_indices(gold, 4, seed=24)
    scored_by = {text: demos for demos, text in service.calls}
    assert len(service.calls) == 24
    for i, text in enumerate(texts):
        shown = {d.text for d in scored_by[text]}
        assert (text not in shown and len(shown) == 3) if i in picked else shown == {texts[j] for j in picked}
    assert np.allclose(plain.probs, 0.5)  # sigmoid(0): no item was shown its own labels
