"""Train the embedding head on ground truth and score it, alone and pooled with the LLM, by
cross-validation on the same folds as every other candidate."""
from __future__ import annotations

import warnings

import numpy as np

from ...labeling.calibration import softmax
from ...labeling.head import (ABSENT_INTERCEPT, HeadWeights, mix, pool, stacked_features, unseen_label_mass,
                              with_unseen_mass)
from ...labeling.recipe import ControlRecipe
from ..validation.control_kind import SINGLE, ControlKind, fitted_temperature
from ..validation.crossval import CandidateResult
from .contract import ControlJob, Plan

WEIGHT_GRID = (0.0, 0.25, 0.5, 0.75, 1.0)  # weight of the LLM in the pooled distribution
REGULARISATION_C = 10.0  # inverse L2 strength for unit-length sentence embeddings, unless a job chose one
C_GRID = (1.0, REGULARISATION_C, 100.0)  # what a job chooses among by cross-validation (evaluate_head)
STACK_SCALES = (0.3, 1.0, 3.0)  # how loud the LLM's log-probabilities are beside the embedding (stacked head)


def train_head(embeddings: np.ndarray, gold: np.ndarray, n_labels: int,
               balanced: bool = False, weights: np.ndarray | None = None,
               c: float = REGULARISATION_C) -> tuple[np.ndarray, np.ndarray]:
    """(coef, intercept) over all `n_labels`; a label absent from `gold` gets a very low intercept.
    `balanced` weighs each label's items inversely to its frequency (a rare label is not drowned);
    `weights` weighs each item (the robust head's suspects count less); `c` is the inverse L2
    strength (benchmarks try others)."""
    from sklearn.linear_model import LogisticRegression

    present = np.unique(gold)
    coef = np.zeros((n_labels, embeddings.shape[1]))
    intercept = np.full(n_labels, ABSENT_INTERCEPT)
    if len(present) == 1:
        intercept[present[0]] = 0.0
        return coef, intercept
    model = LogisticRegression(C=c, max_iter=2000, class_weight="balanced" if balanced else None)
    with warnings.catch_warnings():
        # with more labels than half the items (an intent set's first labels) sklearn suspects a
        # regression target, once per fit: a flood in the worker's log that says nothing
        warnings.filterwarnings("ignore", message="The number of unique classes", category=UserWarning)
        model.fit(embeddings, gold, sample_weight=weights)
    if len(present) == 2:  # sklearn's binary form: one row for the second class
        coef[present[1]], intercept[present[1]] = model.coef_[0], model.intercept_[0]
        intercept[present[0]] = 0.0
    else:
        coef[present], intercept[present] = model.coef_, model.intercept_
    return coef, intercept


def head_probs(coef, intercept, embeddings, unseen_mass: float = 0.0):
    return with_unseen_mass(softmax(embeddings @ coef.T + intercept), intercept, unseen_mass)


def head_out_of_fold(embeddings: np.ndarray, gold: np.ndarray, n_labels: int, balanced: bool,
                     folds: np.ndarray, c: float = REGULARISATION_C) -> np.ndarray:
    """The head's probabilities on each fold, trained on the other folds."""
    out = np.zeros((len(gold), n_labels))
    for f in np.unique(folds):
        test = folds == f
        coef, intercept = train_head(embeddings[~test], gold[~test], n_labels, balanced, c=c)
        out[test] = head_probs(coef, intercept, embeddings[test], unseen_label_mass(gold[~test], n_labels))
    return out


def fit_head_temperature(embeddings: np.ndarray, gold: np.ndarray, n_labels: int, balanced: bool, folds: np.ndarray,
                         c: float = REGULARISATION_C) -> float:
    """The temperature that calibrates the head on these items (fitted on its out-of-fold
    probabilities): a head trained on more items per label is sharper, so a refit needs its own."""
    return fitted_temperature(head_out_of_fold(embeddings, gold, n_labels, balanced, folds, c), gold)


def cross_chosen(oof: dict[float, np.ndarray], gold: np.ndarray, folds: np.ndarray,
                 kind: ControlKind = SINGLE) -> tuple[np.ndarray, float]:
    """A setting (a regularisation, a pooling weight, a scale) chosen among `oof` (setting →
    out-of-fold probabilities) without peeking: each fold's probabilities come from the setting
    best on the other folds; the setting that ships is the one best on all items (the kind's
    label F1, ties to lower log-loss: ControlKind.pool_score; ties again to the first setting)."""
    raw = np.zeros_like(next(iter(oof.values())))
    for f in np.unique(folds):
        test = folds == f
        chosen = max(oof, key=lambda v: kind.pool_score(gold[~test], oof[v][~test]))
        raw[test] = oof[chosen][test]
    return raw, max(oof, key=lambda v: kind.pool_score(gold, oof[v]))


def evaluate_head(llm: CandidateResult, embeddings: np.ndarray, folds: np.ndarray,
                  balanced: bool = False) -> list[CandidateResult]:
    """Head alone and head pooled with `llm` (whose out-of-fold probabilities are reused), both
    log-linearly and as a mixture with the head sharpened by its own temperature (its head-alone
    candidate's; labeling.head says why).

    `balanced` trains the logistic regression with label weights inverse to label frequency: with
    a rare label among few labels the plain head hardly ever predicts it, while on a balanced set
    both are alike (docs/benchmarks.md). Both compete.

    The regularisation is chosen from C_GRID like a pooling weight (cross_chosen): the best
    strength depends on how many labels there are per class, which differs per project and job,
    and the choice is kept in the weights so that a refit trains the same way."""
    gold, n_labels = llm.gold, llm.probs.shape[1]
    head_oof, c = cross_chosen({c: head_out_of_fold(embeddings, gold, n_labels, balanced, folds, c) for c in C_GRID},
                               gold, folds)
    coef, intercept = train_head(embeddings, gold, n_labels, balanced, c=c)
    name = "head-balanced" if balanced else "head"
    return [*head_results(name, llm, head_oof, coef, intercept, folds, balanced=balanced, c=c),
            evaluate_stacked(name, llm, embeddings, folds, balanced, c)]


def evaluate_stacked(name: str, llm: CandidateResult, embeddings: np.ndarray, folds: np.ndarray,
                     balanced: bool, c: float = REGULARISATION_C, **flags) -> CandidateResult:
    """The head trained on the embedding and `llm`'s log-probabilities together (labeling.head,
    stacked), served alone. The features' scale is chosen like a pooling weight: on the other
    folds for each fold's out-of-fold probabilities, on all items for the head that ships.
    `flags` as for head_results (`embeddings` then holds what they add: the state at the answer)."""
    gold, n_labels = llm.gold, llm.probs.shape[1]
    oof = {scale: head_out_of_fold(stacked_features(embeddings, llm.probs, scale), gold, n_labels, balanced, folds, c)
           for scale in STACK_SCALES}
    raw, scale = cross_chosen(oof, gold, folds)
    probs, _ = SINGLE.cross_fitted_temperature(raw, gold, folds)
    coef, intercept = train_head(stacked_features(embeddings, llm.probs, scale), gold, n_labels, balanced, c=c)
    head = HeadWeights(tuple(map(tuple, coef.tolist())), tuple(intercept.tolist()), 0.0,
                       fitted_temperature(oof[scale], gold), balanced=balanced,
                       unseen_mass=unseen_label_mass(gold, n_labels), llm_scale=scale, c=c, **flags)
    return CandidateResult(f"{llm.name}+{name}-stacked", ControlRecipe(llm.recipe.prompt, llm.recipe.calibrator, head),
                           probs, gold)


def head_results(name: str, llm: CandidateResult, head_oof: np.ndarray, coef: np.ndarray, intercept: np.ndarray,
                 folds: np.ndarray, **flags) -> list[CandidateResult]:
    """A head's three candidates from its out-of-fold probabilities and its weights fitted on all
    items (`flags`: how it was trained, HeadWeights.balanced or .robust, so that a refit trains it
    the same way): alone, pooled with `llm` log-linearly, and mixed with it."""
    gold, n_labels = llm.gold, llm.probs.shape[1]
    head_alone, head_only_t = SINGLE.cross_fitted_temperature(head_oof, gold, folds)
    unseen_mass = unseen_label_mass(gold, n_labels)

    def recipe(w: float, t: float, pooling: str = "log", head_t: float = 1.0) -> ControlRecipe:
        head = HeadWeights(tuple(map(tuple, coef.tolist())), tuple(intercept.tolist()), w, t, **flags,
                           unseen_mass=unseen_mass, pooling=pooling, head_temperature=head_t)
        return ControlRecipe(llm.recipe.prompt, llm.recipe.calibrator, head)

    pooled, w_all, temperature = _cross_fitted_pool(llm.probs, head_oof, gold, folds, pool)
    mixed, w_mix, t_mix = _cross_fitted_pool(llm.probs, head_alone, gold, folds, mix)
    return [
        CandidateResult(name, recipe(0.0, head_only_t), head_alone, gold),
        CandidateResult(f"{llm.name}+{name}", recipe(w_all, temperature), pooled, gold),
        CandidateResult(f"{llm.name}+{name}-mix", recipe(w_mix, t_mix, "mix", head_only_t), mixed, gold),
    ]


def _cross_fitted_pool(llm: np.ndarray, head: np.ndarray, gold: np.ndarray, folds: np.ndarray,
                       pooling) -> tuple[np.ndarray, float, float]:
    """Out-of-fold pooled probabilities (weight and temperature chosen on the other folds), and the
    weight chosen on all items with the temperature that weight's pool calls for. Not the
    temperature of the out-of-fold pool: its folds may have chosen other weights than the one
    that ships."""
    by_weight = {w: pooling(llm, head, w) for w in WEIGHT_GRID}
    raw, weight = cross_chosen(by_weight, gold, folds)
    pooled, _ = SINGLE.cross_fitted_temperature(raw, gold, folds)
    return pooled, weight, fitted_temperature(by_weight[weight], gold)


class EmbeddingHead:
    """The MiniLM head alone and pooled with the best LLM candidate so far (single choice), plain
    and label-balanced: fits on embeddings, seconds, so it always runs."""

    def plans(self, job: ControlJob) -> list[Plan]:
        if job.kind is not SINGLE:
            return []
        return [Plan(name, lambda balanced=balanced: evaluate_head(job.best_llm() or job.judged_current, job.embeddings,
                                                                    job.folds, balanced=balanced), cheap=True,
                     pools=True)
                for name, balanced in (("head", False), ("head-balanced", True))]
