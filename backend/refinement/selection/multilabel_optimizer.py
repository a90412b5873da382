"""Refine a multi-choice control: candidates judged like the single-choice ones, on the same folds.

Every label of a multi-choice control is its own yes/no question, so a candidate gives an
items × labels matrix of P(yes). The candidates, cheapest first, each built from the current
version (which always competes):

- `calibrated`: the current prompt with a per-label bias and scale fitted on ground truth, with
  the contextual calibration as prior (a label seen in few items stays near it);
- `k-shot` (and `k-shot+calibrated`): demonstrations picked label by label, rarest label first,
  so the few slots show as many different labels as possible;
- `head` and `<best LLM>+head`: a one-vs-rest MiniLM head alone and pooled with the best LLM
  candidate per label (multilabel_head.py).

When none is accepted, the current recipe refit on all items is judged for a refresh, as for
single choice (judge_current.refreshed_current), with micro-F1 and summed log-loss as the rule.

Selection mirrors optimizer.select, with micro-F1 (all item × label decisions pooled) as the label
metric: significantly better (one-sided paired bootstrap over items) in micro-F1, or in log-loss
summed over an item's labels while losing at most F1_NON_INFERIORITY micro-F1. Not macro-F1: at
a fixed 0.5 threshold, a model that answers "yes" to every label gets about twice each label's base
rate as F1 on every label, so per-label averaging prefers it to a calibrated model that predicts
one label per item (goemotions, 28 labels: v0 says yes to ~19 labels per item, macro-F1 0.084 vs
0.014 for the calibrated version, whose micro-F1 is 0.198 vs 0.086).
"""
from __future__ import annotations

import logging
import random
from dataclasses import replace
from typing import Sequence

import numpy as np

from ...labeling.calibration import fit_multilabel_calibrator
from ...labeling.label_config import ChoiceControl
from ...labeling.prompt import Demo, PromptVersion
from ...labeling.recipe import ControlRecipe
from ...labeling.service import LabelingService
from ...metrics.multi_label import log_loss_per_item, predicted_sets
from ..validation.crossval import MultiLabelResult, fold_ids, logits_matrix, score_as_shipped
from ..validation.significance import paired_bootstrap_mean, paired_bootstrap_multilabel_f1
from .current_refit import cross_fit_current, refreshed_current
from .optimizer import F1_NON_INFERIORITY, ControlDecision, Plan, choose_significant, judged_items, no_worse, run_plans

log = logging.getLogger(__name__)


def select_multilabel(current: MultiLabelResult, candidates: list[MultiLabelResult],
                      alpha: float) -> tuple[MultiLabelResult, int, int, float, bool]:
    """The selection rule alone (pure); returns (chosen, McNemar b, c, p, accepted) like `select`."""
    current_pred, current_loss = predicted_sets(current.probs), log_loss_per_item(current.gold, current.probs)
    tests = []
    for cand in candidates:
        gain, p_f1 = paired_bootstrap_multilabel_f1(cand.gold, predicted_sets(cand.probs), current_pred,
                                                    average="micro")
        loss_gain, p_loss = paired_bootstrap_mean(current_loss - log_loss_per_item(cand.gold, cand.probs))
        cand.metrics.update(p_f1_vs_current=round(p_f1, 4), p_logloss_vs_current=round(p_loss, 4))
        tests += [(cand, p_f1, gain > 0), (cand, p_loss, loss_gain > 0 and gain >= -F1_NON_INFERIORITY)]
    def loss_gain_p(a: MultiLabelResult, b: MultiLabelResult) -> float:
        return paired_bootstrap_mean(_item_loss(b) - _item_loss(a))[1]

    return choose_significant(current, candidates, tests, alpha, key=lambda r: (r.metrics["micro_f1"], -r.metrics["log_loss"]),
                              f1_gain_p=_micro_f1_gain_p, loss_gain_p=loss_gain_p)


def _micro_f1_gain_p(a: MultiLabelResult, b: MultiLabelResult) -> float:
    """p of a one-sided paired bootstrap that a's micro-F1 is above b's."""
    return paired_bootstrap_multilabel_f1(a.gold, predicted_sets(a.probs), predicted_sets(b.probs), average="micro")[1]


def _item_loss(result: MultiLabelResult) -> np.ndarray:
    return log_loss_per_item(result.gold, result.probs)


def multilabel_demos_of(texts: Sequence[str], gold: np.ndarray, labels: Sequence[str],
                        indices: Sequence[int]) -> tuple[Demo, ...]:
    gold = np.asarray(gold, dtype=bool)
    return tuple(Demo(texts[i], tuple(labels[j] for j in np.flatnonzero(gold[i]))) for i in indices)


def pick_multilabel_demo_indices(gold: np.ndarray, k: int, seed: int = 0) -> list[int]:
    """k items, each shown with its whole label set; rounds over the labels, rarest first, pick
    an unused item for every label shown fewer times than the round number. Seeded, reproducible."""
    gold = np.asarray(gold, dtype=bool)
    rng = random.Random(seed)
    by_label = {j: [i for i in range(len(gold)) if gold[i, j]] for j in range(gold.shape[1])}
    for items in by_label.values():
        rng.shuffle(items)
    order = sorted(by_label, key=lambda j: (len(by_label[j]), j))
    shown = np.zeros(gold.shape[1], dtype=int)
    picked: list[int] = []
    round_ = 0
    while len(picked) < k and any(i not in picked for items in by_label.values() for i in items):
        for j in order:
            candidates = [i for i in by_label[j] if i not in picked]
            if len(picked) < k and shown[j] <= round_ and candidates:
                picked.append(candidates[0])
                shown += gold[candidates[0]]
        round_ += 1
    rng.shuffle(picked)
    return picked


def evaluate_fixed_multilabel(name: str, recipe: ControlRecipe, service: LabelingService, control: ChoiceControl,
                              texts, gold: np.ndarray, logits: np.ndarray | None = None,
                              embeddings: np.ndarray | None = None, deadline: float | None = None) -> MultiLabelResult:
    """A recipe used as is (the current version, or one that learns nothing from ground truth)."""
    logits = logits_matrix(service, control, recipe.prompt, texts, deadline) if logits is None else logits
    probs = (recipe.calibrator or service.calibrator(control, recipe.prompt)).apply(logits, True)
    if recipe.head is not None:
        embeddings = service.embedder.encode(list(texts)) if embeddings is None else embeddings
        probs = recipe.head.combine(probs, embeddings)
    return MultiLabelResult(name, recipe, probs, gold)


def evaluate_per_label_calibration(name: str, prompt: PromptVersion, logits: np.ndarray, gold: np.ndarray,
                                   folds: np.ndarray, prior) -> MultiLabelResult:
    """Per-label bias and scale fitted on the other folds (cross-fitting), around `prior`."""
    probs = np.zeros_like(logits, dtype=np.float64)
    for f in np.unique(folds):
        test = folds == f
        probs[test] = fit_multilabel_calibrator(logits[~test], gold[~test], prior).apply(logits[test], True)
    return MultiLabelResult(name, ControlRecipe(prompt, fit_multilabel_calibrator(logits, gold, prior)), probs, gold)


def evaluate_multilabel_few_shot(name: str, base: PromptVersion, service: LabelingService, control: ChoiceControl,
                                 texts, gold: np.ndarray, folds: np.ndarray, shots: int,
                                 deadline: float | None = None) -> list[MultiLabelResult]:
    """k-shot with content-free calibration, and with per-label calibration cross-fitted on its
    logits; judged as it ships (evaluate.evaluate_few_shot says why): one draw of demonstrations
    for every item, a demonstration item scored with the other k − 1."""
    texts = list(texts)

    def prompt_with(indices) -> PromptVersion:
        return replace(base, name=name, demos=multilabel_demos_of(texts, gold, control.labels, indices))

    picked = pick_multilabel_demo_indices(gold, shots, seed=len(texts))
    final, logits, contextual = score_as_shipped(service, control, texts, picked, prompt_with, multiple=True,
                                                 deadline=deadline)
    prior = service.calibrator(control, final)
    fitted = evaluate_per_label_calibration(f"{name}+calibrated", final, logits, gold, folds, prior)
    return [MultiLabelResult(name, ControlRecipe(final, None), contextual, gold), fitted]


def _best_llm(results: list[MultiLabelResult], current: MultiLabelResult) -> MultiLabelResult:
    llm_only = [r for r in [current, *results] if r.recipe.head is None]
    return max(llm_only, key=lambda r: (r.metrics["micro_f1"], -r.metrics["log_loss"]))


def optimize_multilabel_control(
    service: LabelingService,
    control: ChoiceControl,
    texts: list[str],
    gold: np.ndarray,
    current: ControlRecipe,
    *,
    folds: int,
    shots: int,
    alpha: float,
    deadline: float,
    judge_mask: np.ndarray | None = None,
) -> ControlDecision:
    """Same contract as optimizer.optimize_control, with `gold` an items × labels 0/1 matrix."""
    from ..candidates.one_vs_rest_head import evaluate_one_vs_rest_head

    skipped: list[str] = []
    cur_logits, used, pace = judged_items(service, control, current.prompt, texts, deadline, skipped)
    texts, gold = [t for t, u in zip(texts, used) if u], np.asarray(gold, dtype=np.int8)[used]
    judge_mask = None if judge_mask is None else np.asarray(judge_mask)[used]
    fold = fold_ids(len(texts), folds)
    base = PromptVersion(name="base")
    embeddings = service.embedder.encode(texts)
    cur = evaluate_fixed_multilabel("current", current, service, control, texts, gold, cur_logits, embeddings)
    prior = service.calibrator(control, current.prompt)
    served = current.calibrator or prior
    if judge_mask is not None:
        cur, judge_mask = cross_fit_current(cur, served, cur_logits, embeddings, texts, ~judge_mask,
                                            fold, multiple=True, prior=prior)
    cur_all_items = cur
    plans = [Plan("calibrated", lambda: evaluate_per_label_calibration(
        "calibrated", current.prompt, cur_logits, gold, fold, prior), cheap=True)]
    if current.prompt.demos or current.prompt.instructions:
        plans.append(Plan("base", lambda: evaluate_fixed_multilabel("base", ControlRecipe(base), service, control, texts, gold,
                                                                    deadline=deadline), items=len(texts)))
    for k in sorted({min(shots, 4), shots}):
        if k > 0 and len(texts) >= 2 * k:
            plans.append(Plan(f"{k}-shot", lambda k=k: evaluate_multilabel_few_shot(
                f"{k}-shot", base, service, control, texts, gold, fold, k, deadline), items=len(texts)))
    plans.append(Plan("head", lambda: evaluate_one_vs_rest_head(_best_llm(results, cur), embeddings, fold),
                      cheap=True))
    results: list[MultiLabelResult] = []
    run_plans(plans, deadline, results, skipped, pace)
    judged = judge_mask is not None and judge_mask.sum() >= 2 and not judge_mask.all()
    if judged:
        cur, results = cur.subset(judge_mask), [r.subset(judge_mask) for r in results]
    best, b, c, p, accepted = select_multilabel(cur, results, alpha)
    table = [{"name": r.name, **r.metrics} for r in [cur, *results]]
    log.info("multi-choice control %s: best %s %s vs current %s, p=%.4f, accepted=%s", control.name, best.name,
             best.metrics, cur.metrics, p, accepted)
    refit = None
    if not accepted:  # as for single choice: the current recipe refit on all items (judge_current)
        refit = refreshed_current(cur_all_items, served, cur_logits, embeddings, texts, fold,
                                  multiple=True, prior=prior)
        if refit is not None:
            refit = refit.subset(judge_mask) if judged else refit
            no_worse(refit, cur, alpha, f1_gain_p=_micro_f1_gain_p, item_loss=_item_loss)
    return ControlDecision(control.name, len(cur.gold), cur, best, accepted, b, c, p, table, skipped, results, refit,
                           used)
