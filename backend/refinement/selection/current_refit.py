"""Judge the current version on the items it was built from, too, by cross-fitting what it learnt.

A published version has seen its own ground truth (calibration fitted on it, an embedding head
trained on it, a demo pool holding it), so on those items it looks better than it will on new
tasks. Leaving them out of the comparison is honest but costly: after 50 labels a version built
from 25 is judged on 25 items only, and no candidate is significant after correcting for ~10
candidates. Instead, on each fold of those items we refit the current version's *learnt parts*
(its calibration and its head, with the same pooling weight and temperature) on the other folds
of the items it had, and judge what that refit predicts. A nearest-demo pool already hides each
item's own copy (`logits_matrix` is leave-one-out). The refit sees about 4/5 of the version's
items, so if anything it slightly understates the current version.

What cannot be refit stays out of the comparison: items shown as fixed demonstrations (the prompt
holds their labels), and every seen item when the instructions were searched on ground truth (a
rewritten instruction was chosen on them; the caller says when they are a wording chosen without
labels, `fixed_wording`) or when the head reads a body fine-tuned on them. A head that reads the
LLM's state at the answer is refit on the states of the job's pass (`states`), keeping the mean
they are centred on; without them (an engine that does not give them) it is not refit.

`refreshed_current` is the same recipe with those parts, its pooling temperature and its decision
threshold refit on all the ground truth there is now: a version keeps what its first few labels
gave it unless something refits it, and a candidate has to be significantly better to replace it
(docs/how-it-learns.md).
"""
from __future__ import annotations

from dataclasses import replace

import numpy as np

from ...labeling.calibration import BATCH, Calibrator
from ...labeling.head import HeadWeights, stacked_features, unseen_label_mass
from ...labeling.label_config import ChoiceControl
from ...labeling.prompt import clip_demo
from ...labeling.recipe import ControlRecipe
from ...labeling.templates import template_wording
from ...labeling.tuned_body import is_tuned
from ..candidates.embedding_head import REGULARISATION_C, fit_head_temperature, train_head
from ..candidates.robust_head import refit_weights
from ..candidates.one_vs_rest_head import train_one_vs_rest
from ..validation.control_kind import ControlKind
from ..validation.crossval import CandidateResult


def cross_fit_current(current: CandidateResult, served: Calibrator, logits: np.ndarray, embeddings: np.ndarray,
                      texts: list[str], seen: np.ndarray, folds: np.ndarray, *,
                      prior: Calibrator | None = None, fixed_wording: bool = False,
                      states: np.ndarray | None = None) -> tuple[CandidateResult, np.ndarray]:
    """(`current` with out-of-fold probabilities on the `seen` items it can be refit on, the mask
    of items it may be judged on). `served` is the LLM calibration as served (before any head);
    `prior` the content-free one that a fitted calibration is fitted around; `fixed_wording`:
    the prompt's instructions, if any, were chosen without labels (labeling/templates.py);
    `states` the LLM's states at the answer of the items, for a head that reads them."""
    recipe: ControlRecipe = current.recipe
    kind = current.kind
    seen = np.asarray(seen, bool)
    judge = ~seen
    if not seen.any() or searched_wording(recipe, fixed_wording) or tuned_head(recipe) or stateless(recipe, states):
        return current, judge
    demo_texts = {d.text for d in recipe.prompt.demos}
    refittable = seen & np.array([t not in demo_texts and clip_demo(t) not in demo_texts for t in texts])
    gold, probs = current.gold, current.probs.copy()
    refit_calibration = kind.calibration_fit(recipe.calibrator, prior)
    for f in np.unique(folds[refittable]):
        test, train = refittable & (folds == f), seen & (folds != f)
        if train.sum() < 2:
            continue
        calibrator = refit_calibration(logits[train], gold[train]) if refit_calibration else served
        llm = calibrator.apply(logits[test], kind.multiple)
        if recipe.head is not None:
            llm_train = calibrator.apply(logits[train], kind.multiple) if recipe.head.llm_scale else None
            head = _refit_head(recipe.head, embeddings[train], gold[train], kind, llm_train, _rows(states, train))
            llm = head.combine(llm, embeddings[test], _rows(states, test))
        probs[test] = llm
        judge |= test
    refit = current.like(current.name, recipe, probs)
    refit.metrics.update(judged_seen_items=int((judge & seen).sum()))
    return refit, judge


def refreshed_current(current: CandidateResult, served: Calibrator, logits: np.ndarray, embeddings: np.ndarray,
                      texts: list[str], folds: np.ndarray, name: str = "current-refit", *,
                      prior: Calibrator | None = None, fixed_wording: bool = False,
                      states: np.ndarray | None = None) -> CandidateResult | None:
    """The current recipe with its fitted calibration, its head and the head's pooling temperature
    (a mixture head's own temperature too) refit on all items (pooling weight kept), with
    cross-fitted probabilities to judge it by (the temperature fitted on the other folds too); None
    when it learnt nothing refittable. Demo items keep the current's probabilities: judge the result
    where `current` is judged. `prior`, `fixed_wording` and `states` as for cross_fit_current."""
    recipe: ControlRecipe = current.recipe
    kind = current.kind
    refit_calibration = kind.calibration_fit(recipe.calibrator, prior)
    if searched_wording(recipe, fixed_wording) or tuned_head(recipe) or stateless(recipe, states) or (
            refit_calibration is None and recipe.head is None and recipe.threshold is None):
        return None
    untempered = replace(recipe, head=_untempered_head(recipe.head, embeddings, current.gold, folds, states)) \
        if recipe.head else recipe
    everything = np.ones(len(texts), bool)
    refit, judged = cross_fit_current(current.like(name, untempered, current.probs), served, logits,
                                      embeddings, texts, everything, folds, prior=prior, fixed_wording=fixed_wording,
                                      states=states)
    gold, probs = current.gold, refit.probs.copy()
    calibrator = refit_calibration(logits, gold) if refit_calibration else recipe.calibrator
    head, temperature = None, 1.0
    if recipe.head is not None:
        probs[judged], temperature = kind.cross_fitted_temperature(refit.probs[judged], gold[judged], folds[judged])
        llm = (calibrator or served).apply(logits, kind.multiple) if recipe.head.llm_scale else None
        head = replace(_refit_head(untempered.head, embeddings, gold, kind, llm, states), temperature=temperature)
    refreshed = current.like(name, replace(recipe, calibrator=calibrator, head=head), probs)
    return refreshed.with_threshold(folds) if kind.multiple else refreshed


def searched_wording(recipe: ControlRecipe, fixed_wording: bool) -> bool:
    """Whether the recipe's instructions may have been searched on its ground truth: any but the
    built-in ones, unless the caller knows them to be a wording chosen without labels."""
    return recipe.prompt.instructions is not None and not fixed_wording


def learnt_nothing(recipe: ControlRecipe, control: ChoiceControl) -> bool:
    """Whether the recipe was fitted on no ground truth: version 0's wording or a template's
    (labeling/templates.py), with at most its content-free or batch calibration (both set
    without labels), no demonstrations, head or fitted threshold."""
    prompt, calibrator = recipe.prompt, recipe.calibrator
    return (template_wording(prompt, control) and not prompt.demos and not prompt.nearest and prompt.reasoning is None
            and recipe.head is None and recipe.threshold is None
            and (calibrator is None or calibrator.method in ("contextual", BATCH)))


def tuned_head(recipe: ControlRecipe) -> bool:
    """Whether the recipe's head reads a fine-tuned body: the body learnt from every item it was
    fitted on, so refitting the head on some of them would still have seen the rest. Only the
    fine-tuned head's stage refits it (candidates/tuned_head.py)."""
    return recipe.head is not None and is_tuned(recipe.head.embedder)


def stateless(recipe: ControlRecipe, states: np.ndarray | None) -> bool:
    """Whether the recipe's head reads the LLM's state at the answer and the job has none to refit it on."""
    return recipe.head is not None and recipe.head.reads_state and states is None


def _rows(states: np.ndarray | None, rows: np.ndarray) -> np.ndarray | None:
    return None if states is None else states[rows]


def tuned_bodies_read(controls: dict[str, ControlRecipe]) -> dict[str, str]:
    """Per control whose head reads a fine-tuned body, that body's name."""
    return {name: recipe.head.embedder for name, recipe in controls.items() if tuned_head(recipe)}


def _untempered_head(head, embeddings: np.ndarray, gold: np.ndarray, folds: np.ndarray,
                     states: np.ndarray | None = None):
    """The head before its pooling temperature is refit; a mixture head also gets the temperature
    that calibrates it alone on all the items now (one cross-fit on the job's folds): a head
    trained on more items per label is sharper than the one it was fitted for."""
    if head.pooling != "mix" or head.one_vs_rest:
        return replace(head, temperature=1.0)
    head_t = fit_head_temperature(head.features(embeddings, states), gold, len(head.intercept), head.balanced, folds,
                                  _c(head))
    return replace(head, temperature=1.0, head_temperature=head_t)


def _c(head: HeadWeights) -> float:
    return REGULARISATION_C if head.c is None else head.c


def _refit_head(head: HeadWeights, embeddings: np.ndarray, gold: np.ndarray, kind: ControlKind,
                llm: np.ndarray | None = None, states: np.ndarray | None = None) -> HeadWeights:
    """The current head's logistic regression refit on these items; pooling weight and temperatures
    kept. A stacked head reads `llm`, the LLM's calibrated probabilities of the same items, too;
    one that reads the LLM's states at the answer, `states` (centred on the mean it has)."""
    embeddings = head.features(embeddings, states)
    if head.llm_scale:
        embeddings = stacked_features(embeddings, llm, head.llm_scale)
    unseen_mass = 0.0
    if kind.multiple:
        coef, intercept = train_one_vs_rest(embeddings, gold)
    else:
        n_labels = len(head.intercept)
        weights = refit_weights(embeddings, gold, n_labels) if head.robust else None
        coef, intercept = train_head(embeddings, gold, n_labels, head.balanced, weights=weights, c=_c(head))
        unseen_mass = unseen_label_mass(gold, n_labels)
    return replace(head, coef=tuple(map(tuple, coef.tolist())), intercept=tuple(intercept.tolist()),
                   unseen_mass=unseen_mass)
