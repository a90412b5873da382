"""The one-vs-rest embedding head of a multi-choice control, scored alone and pooled with the LLM
by cross-validation on the same folds as every other candidate.

One binary logistic regression per label on MiniLM embeddings. A label never seen positive (or
always seen positive) gets no weights and the smoothed log-odds of its frequency,
log((0.5 + positives) / (0.5 + negatives)): the head alone never suggests it, yet its P(yes) is
not ~0, so pooling still lets a sure LLM through and one positive in a held-out fold does not
inflate the fitted temperature of every label (docs/benchmarks.md). Pooling is per label on the
yes/no logit with one LLM weight for the control, chosen on the other folds, then one
temperature fitted on the other folds (a pooled probability is not calibrated by itself).
"""
from __future__ import annotations

import numpy as np

from ...labeling.calibration import sigmoid
from ...labeling.head import HeadWeights, pool_yes_no
from ...labeling.recipe import ControlRecipe
from ..validation.control_kind import MULTIPLE
from ..validation.crossval import CandidateResult
from .contract import ControlJob, Plan
from .embedding_head import REGULARISATION_C, WEIGHT_GRID, cross_chosen


def train_one_vs_rest(embeddings: np.ndarray, gold: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(coef labels × dims, intercept per label) from items × labels 0/1 ground truth."""
    from sklearn.linear_model import LogisticRegression

    gold = np.asarray(gold, dtype=int)
    n, k = gold.shape
    coef = np.zeros((k, embeddings.shape[1]))
    intercept = np.zeros(k)
    for j in range(k):
        positives = int(gold[:, j].sum())
        if positives in (0, n):
            intercept[j] = float(np.log((positives + 0.5) / (n - positives + 0.5)))
            continue
        model = LogisticRegression(C=REGULARISATION_C, max_iter=2000).fit(embeddings, gold[:, j])
        coef[j], intercept[j] = model.coef_[0], model.intercept_[0]
    return coef, intercept


def one_vs_rest_oof(embeddings: np.ndarray, gold: np.ndarray, folds: np.ndarray) -> np.ndarray:
    """The head's P(yes) of every item, from the head trained on the other folds."""
    head_oof = np.zeros(gold.shape)
    for f in np.unique(folds):
        test = folds == f
        coef, intercept = train_one_vs_rest(embeddings[~test], gold[~test])
        head_oof[test] = sigmoid(embeddings[test] @ coef.T + intercept)
    return head_oof


def evaluate_one_vs_rest_head(llm: CandidateResult, embeddings: np.ndarray, folds: np.ndarray) -> list[CandidateResult]:
    """Head alone and head pooled with `llm` (whose out-of-fold probabilities are reused)."""
    gold = llm.gold
    head_oof = one_vs_rest_oof(embeddings, gold, folds)
    raw_pool, w_all = cross_chosen({w: pool_yes_no(llm.probs, head_oof, w) for w in WEIGHT_GRID}, gold, folds, MULTIPLE)
    pooled, temperature = MULTIPLE.cross_fitted_temperature(raw_pool, gold, folds)
    head_alone, head_only_t = MULTIPLE.cross_fitted_temperature(head_oof, gold, folds)
    coef, intercept = train_one_vs_rest(embeddings, gold)

    def recipe(w: float, t: float) -> ControlRecipe:
        head = HeadWeights(tuple(map(tuple, coef.tolist())), tuple(intercept.tolist()), w, t, one_vs_rest=True)
        return ControlRecipe(llm.recipe.prompt, llm.recipe.calibrator, head)

    return [
        llm.like("head", recipe(0.0, head_only_t), head_alone),
        llm.like(f"{llm.name}+head", recipe(w_all, temperature), pooled),
    ]


class OneVsRestHead:
    """The one-vs-rest MiniLM head alone and pooled with the best LLM candidate so far (multiple
    choice): fits on embeddings, seconds, so it always runs."""

    def plans(self, job: ControlJob) -> list[Plan]:
        if job.kind is not MULTIPLE:
            return []
        return [Plan("head", lambda: evaluate_one_vs_rest_head(job.best_llm() or job.judged_current, job.embeddings,
                                                               job.folds), cheap=True, pools=True)]
