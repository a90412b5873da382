"""The one-vs-rest head candidate of multi-choice controls: training, and the pooled head judged on
held-out folds."""
import numpy as np

from backend.labeling.calibration import sigmoid
from backend.labeling.recipe import ControlRecipe
from backend.metrics.multi_label import macro_f1
from backend.refinement.candidates.one_vs_rest_head import evaluate_one_vs_rest_head, train_one_vs_rest
from backend.refinement.validation.control_kind import MULTIPLE
from backend.refinement.validation.crossval import CandidateResult, fold_ids


def test_one_vs_rest_head_gives_a_never_positive_label_only_its_smoothed_frequency():
    rng = np.random.default_rng(0)
    emb = rng.normal(size=(30, 4))
    gold = np.zeros((30, 3), dtype=int)
    gold[:, 0] = emb[:, 0] > 0
    gold[:, 2] = 1
    coef, intercept = train_one_vs_rest(emb, gold)
    assert not coef[1].any() and not coef[2].any()
    probs = sigmoid(emb @ coef.T + intercept)
    np.testing.assert_allclose(probs[:, 1], 0.5 / 31)  # never suggested alone, never ~0 either
    np.testing.assert_allclose(probs[:, 2], 30.5 / 31)
    assert macro_f1(gold[:, :1], probs[:, :1] >= 0.5) > 0.9


def test_pooled_one_vs_rest_head_is_not_worse_than_the_better_part_on_held_out_data():
    """Deterministic fixture: the LLM knows labels 0 and 1, the embeddings know label 2."""
    rng = np.random.default_rng(7)
    n = 300
    gold = (rng.random((n, 3)) < 0.35).astype(int)
    llm_logits = np.stack([(2 * gold[:, 0] - 1) * 2.0, (2 * gold[:, 1] - 1) * 2.0, np.zeros(n)], 1)
    llm_probs = sigmoid(llm_logits + rng.normal(0, 0.8, (n, 3)))
    emb = np.stack([gold[:, 2] * 1.0, 1.0 - gold[:, 2]], 1) + rng.normal(0, 0.35, (n, 2))
    llm = CandidateResult("llm", ControlRecipe(), llm_probs, gold, kind=MULTIPLE)
    head, pooled = evaluate_one_vs_rest_head(llm, emb, fold_ids(n, 5))
    for metric in ("micro_f1", "macro_f1"):  # the weight is chosen on micro-F1, the selection's metric
        assert pooled.metrics[metric] >= max(head.metrics[metric], llm.metrics[metric]), metric
    assert pooled.metrics["micro_f1"] > 0.85
    assert 0 < pooled.recipe.head.weight_llm < 1 and pooled.recipe.head.one_vs_rest
