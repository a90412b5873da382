"""The embedding head trained with the labels most likely wrong down-weighted (`head-robust`).

Ground truth has errors, and a logistic regression follows each wrong label as faithfully as a
right one. Confident learning (validation/label_errors.py) names the labels most likely wrong
from out-of-fold probabilities; this candidate trains the head with those items counting for
SUSPECT_WEIGHT of a label, and competes with the plain head under the same selection rule: it
ships only if it is significantly better on held-out items.

No leakage, nothing left out of the judging: for each outer fold the suspects are found by an
inner cross-validation on the other folds only (their out-of-fold probabilities, their given
labels), the head is trained on those folds with the suspects down-weighted and scores the outer
fold; every item is judged against the label it was given. The recipe that ships is fitted on all
items, with the suspects found by cross-validation on all of them (the job's folds). It is an
ordinary HeadWeights marked `robust`, so serving does not change, and a refit of it as the
current version (Refresh, cross-fitting) down-weights the suspects of its own items the same way
(`refit_weights`).

The rule, chosen by reasoning and not tuned on data sets:

- only *confident* suspects (the suggested label is confidently present, Northcutt's confident
  joint off its diagonal), not the items the head merely leans away from: those are mostly hard
  items near the boundary, which the head most needs to learn from;
- the suspects come from the plain head (what is being trained, and all a cheap plan has);
- a suspect keeps a quarter of a label's weight rather than none: with a few hundred labels a
  head's suspects are mostly its own errors (docs/benchmarks.md#labels-to-review: at 10 % flipped
  about half of the top suspects were wrong labels, and fewer in the head's own list), so
  dropping them would drop as many right labels as wrong ones; at a quarter, three trusted items
  outweigh a suspect that contradicts them, and a suspect no trusted item contradicts still
  counts. Weights are not renormalised: a suspect is weaker evidence, so the regularisation
  weighs a little more.
"""
from __future__ import annotations

import numpy as np

from ...labeling.head import unseen_label_mass
from ..validation.control_kind import SINGLE
from ..validation.crossval import CandidateResult, fold_ids
from ..validation.label_errors import single_label_issues
from .contract import ControlJob, Plan
from .embedding_head import head_out_of_fold, head_probs, head_results, train_head

SUSPECT_WEIGHT = 0.25  # a confident suspect's weight in the fit, a trusted label's being 1
MIN_ITEMS = 30  # fewer: an inner fold of a handful of items says nothing about which label is wrong
NAME = "head-robust"


def suspects(embeddings: np.ndarray, gold: np.ndarray, n_labels: int, folds: np.ndarray) -> np.ndarray:
    """Which items are confident suspects, from the plain head's probabilities on `folds`
    (each fold scored by a head trained on the others)."""
    out = np.zeros(len(gold), dtype=bool)
    if len(np.unique(folds)) < 2 or len(np.unique(gold)) < 2:
        return out
    oof = head_out_of_fold(embeddings, gold, n_labels, False, folds)
    out[[s.position for s in single_label_issues(oof, gold) if s.confident]] = True
    return out


def suspect_weights(embeddings: np.ndarray, gold: np.ndarray, n_labels: int, folds: np.ndarray) -> np.ndarray:
    """1 per item, SUSPECT_WEIGHT for a confident suspect found by cross-validation on `folds`."""
    return np.where(suspects(embeddings, gold, n_labels, folds), SUSPECT_WEIGHT, 1.0)


def refit_weights(embeddings: np.ndarray, gold: np.ndarray, n_labels: int, k: int = 5) -> np.ndarray:
    """The weights a robust head is refit with on these items (suspects by k-fold cross-validation)."""
    return suspect_weights(embeddings, gold, n_labels, fold_ids(len(gold), k))


def robust_out_of_fold(embeddings: np.ndarray, gold: np.ndarray, n_labels: int,
                       folds: np.ndarray) -> tuple[np.ndarray, dict]:
    """The robust head's probabilities on each outer fold, trained on the other folds with the
    suspects an inner cross-validation on those folds found (as many inner folds as outer ones);
    and the weights each outer fold trained with ({fold: weights of its training items, in order})."""
    out, used = np.zeros((len(gold), n_labels)), {}
    k = len(np.unique(folds))
    for f in np.unique(folds):
        test = folds == f
        train_emb, train_gold = embeddings[~test], gold[~test]
        weights = suspect_weights(train_emb, train_gold, n_labels, fold_ids(len(train_gold), k))
        coef, intercept = train_head(train_emb, train_gold, n_labels, weights=weights)
        out[test] = head_probs(coef, intercept, embeddings[test], unseen_label_mass(train_gold, n_labels))
        used[int(f)] = weights
    return out, used


def evaluate_robust_head(llm: CandidateResult, embeddings: np.ndarray, folds: np.ndarray) -> list[CandidateResult]:
    """As embedding_head.evaluate_head: the robust head alone and pooled with `llm`, log-linearly
    and as a mixture, each with its weight and temperature chosen on held-out folds."""
    gold, n_labels = llm.gold, llm.probs.shape[1]
    head_oof, _ = robust_out_of_fold(embeddings, gold, n_labels, folds)
    weights = suspect_weights(embeddings, gold, n_labels, folds)  # found on all items: what ships
    coef, intercept = train_head(embeddings, gold, n_labels, weights=weights)
    return head_results(NAME, llm, head_oof, coef, intercept, folds, robust=True)


class RobustHead:
    """The embedding head with confident label-error suspects down-weighted (single choice, from
    MIN_ITEMS items): fits on embeddings, seconds, so it always runs."""

    def plans(self, job: ControlJob) -> list[Plan]:
        if job.kind is not SINGLE or len(job.gold) < MIN_ITEMS:
            return []
        return [Plan(NAME, lambda: evaluate_robust_head(job.best_llm() or job.judged_current, job.embeddings,
                                                        job.folds), cheap=True, pools=True)]
