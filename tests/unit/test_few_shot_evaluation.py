"""Fixed k-shot candidates are judged as they ship: one draw of demos, each demo item scored without itself."""
import numpy as np

from backend.evaluation.datasets import Dataset
from backend.labeling.calibration import Calibrator
from backend.labeling.label_config import parse_label_config
from backend.labeling.prompt import PromptVersion
from backend.labeling.service import Scored
from backend.refinement.candidates.few_shot import demos_of, evaluate_few_shot, pick_demo_indices
from backend.refinement.validation.crossval import fold_ids


class RecordingService:
    """Scores a text by whether the prompt shows a demo with that text and label (a fake LLM that
    copies its demonstrations), and records which prompt scored which text."""

    def __init__(self, labels):
        self.labels, self.calls = labels, []

    def task_demos(self, prompt, texts, embeddings=None, *, leave_out_self=False):
        return [() for _ in texts]

    def cached(self, control, prompt, texts, task_demos):
        return np.zeros(len(texts), bool)

    def score_texts(self, control, prompt, texts, task_demos=None):
        out = []
        for text in texts:
            self.calls.append((prompt.demos, text))
            logits = np.zeros(len(self.labels))
            for demo in prompt.demos:
                if demo.text == text:
                    for label in demo.labels:
                        logits[self.labels.index(label)] += 5.0
            out.append(Scored(logits, False))
        return out

    def calibrator(self, control, prompt):
        return Calibrator.identity(len(self.labels))


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


def test_multi_choice_few_shot_is_judged_the_same_way():
    from backend.refinement.selection.multilabel_optimizer import (evaluate_multilabel_few_shot,
                                                                   pick_multilabel_demo_indices)

    labels = ("joy", "anger", "fear")
    config = ('<View><Text name="text" value="$text"/><Choices name="label" toName="text" choice="multiple">'
              + "".join(f'<Choice value="{label}"/>' for label in labels) + "</Choices></View>")
    control = parse_label_config(config).controls[0]
    rng = np.random.default_rng(1)
    gold = (rng.random((24, 3)) < 0.4).astype(np.int8)
    gold[gold.sum(1) == 0, 0] = 1
    texts = [f"post {i}" for i in range(24)]
    service = RecordingService(list(labels))
    plain, fitted = evaluate_multilabel_few_shot("4-shot", PromptVersion(name="base"), service, control, texts, gold,
                                                 fold_ids(24, 4), 4)
    picked = pick_multilabel_demo_indices(gold, 4, seed=24)
    scored_by = {text: demos for demos, text in service.calls}
    assert len(service.calls) == 24
    for i, text in enumerate(texts):
        shown = {d.text for d in scored_by[text]}
        assert (text not in shown and len(shown) == 3) if i in picked else shown == {texts[j] for j in picked}
    assert np.allclose(plain.probs, 0.5)  # sigmoid(0): no item was shown its own labels
