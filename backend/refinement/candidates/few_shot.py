"""Few-shot candidates: demonstrations from the ground truth, fixed (k-shot) or per task (k-nearest).

Fixed demos are picked label by label in turn (so every label is shown, rare ones included) in a
seeded random order, which keeps a refinement reproducible; for multiple choice an item is shown
with its whole label set, rarest labels first. A nearest-demo prompt carries the
whole labelled pool and shows each task its most similar examples (backend/labeling/demos.py).
Demo texts are clipped (DEMO_MAX_CHARS) so demonstrations never crowd the task out of the context.
"""
from __future__ import annotations

import random
from dataclasses import replace
from typing import Sequence

import numpy as np

from ...labeling.demos import nearest_indices
from ...labeling.label_config import ChoiceControl
from ...labeling.prompt import Demo, PromptVersion, clip_demo
from ...labeling.recipe import ControlRecipe
from ...labeling.service import LabelingService
from ..validation.control_kind import SINGLE, kind_of
from ..validation.crossval import (PACE_CHUNK, CandidateResult, evaluate_fitted_calibration, pace_budget,
                                   score_as_shipped)
from .contract import ControlJob, Plan

# Per-task nearest demos cost their tokens on every task (they cannot share the KV cache), so a
# few: docs/benchmarks.md measures what they cost against zero-shot.
NEAREST_SHOTS = 4


def pick_demo_indices(gold: Sequence[int], k: int, seed: int = 0) -> list[int]:
    """k items drawn label by label (round robin over labels, random within one), in a seeded order."""
    rng = random.Random(seed)
    by_label: dict[int, list[int]] = {}
    for i, g in enumerate(gold):
        by_label.setdefault(int(g), []).append(i)
    for idx in by_label.values():
        rng.shuffle(idx)
    picked: list[int] = []
    while len(picked) < k and any(by_label.values()):
        for label in sorted(by_label):
            if by_label[label] and len(picked) < k:
                picked.append(by_label[label].pop())
    rng.shuffle(picked)
    return picked


def demos_of(texts: Sequence[str], gold: Sequence[int], labels: Sequence[str], indices: Sequence[int]) -> tuple[Demo, ...]:
    return tuple(Demo(clip_demo(texts[i]), (labels[int(gold[i])],)) for i in indices)


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


def few_shot(base: PromptVersion, demos: tuple[Demo, ...], name: str) -> PromptVersion:
    return replace(base, name=name, demos=demos)


def demo_pool(texts: Sequence[str], gold: Sequence[int], labels: Sequence[str]) -> tuple[Demo, ...]:
    """Every labelled item as a candidate demonstration (clipped), in the given order."""
    return tuple(Demo(clip_demo(t), (labels[int(g)],)) for t, g in zip(texts, gold))


def nearest_shot(base: PromptVersion, pool: tuple[Demo, ...], k: int, name: str) -> PromptVersion:
    return replace(base, name=name, demos=(), pool=pool, nearest=k)


def evaluate_few_shot(name: str, base: PromptVersion, service: LabelingService, control: ChoiceControl,
                      texts, gold: np.ndarray, folds: np.ndarray, shots: int,
                      deadline: float | None = None) -> list[CandidateResult]:
    """Two candidates from one pass of the k-shot prompt that would ship (k demonstrations drawn
    label by label from all items): with content-free calibration, and with a fitted calibration
    cross-fitted on its logits.

    Not a different draw per fold: what a k-shot prompt does depends mostly on which k examples
    it shows, so an average over draws says little about the one draw that ships
    (docs/how-it-learns.md). Every item is scored with the prompt that ships, except that a
    demonstration is scored with the other k − 1 (no item sees its own label). One shared
    prefix, so this is also cheaper than a prompt per fold."""
    kind = kind_of(control)
    texts = list(texts)
    pick, shown = ((pick_multilabel_demo_indices, multilabel_demos_of) if kind.multiple
                   else (pick_demo_indices, demos_of))

    def prompt_with(indices) -> PromptVersion:
        return few_shot(base, shown(texts, gold, control.labels, indices), name)

    picked = pick(gold, shots, seed=len(texts))
    final, logits, contextual = score_as_shipped(service, control, texts, picked, prompt_with, multiple=kind.multiple,
                                                 deadline=deadline)
    fitted = evaluate_fitted_calibration(f"{name}+calibrated", final, logits, gold, folds,
                                         service.calibrator(control, final), kind=kind)
    return [CandidateResult(name, ControlRecipe(final, None), contextual, gold, kind=kind), fitted]


def evaluate_nearest_shot(name: str, base: PromptVersion, service: LabelingService, control: ChoiceControl,
                          texts, gold: np.ndarray, folds: np.ndarray, k: int,
                          embeddings: np.ndarray, deadline: float | None = None) -> list[CandidateResult]:
    """Per-task nearest demos, as served: fold f's items see their k most similar items of the
    other folds. Returned with content-free calibration of the shared prompt, and with a fitted
    calibration cross-fitted on the out-of-fold logits (as for fixed few-shot)."""
    labels = control.labels
    logits = np.zeros((len(texts), len(labels)))
    contextual = np.zeros_like(logits)
    pace, done = pace_budget(deadline, len(texts)), 0
    for f in np.unique(folds):
        train, test = np.where(folds != f)[0], np.where(folds == f)[0]
        pool = demo_pool([texts[i] for i in train], gold[train], labels)
        prompt = nearest_shot(base, pool, k, name)
        chosen = nearest_indices(embeddings[train], embeddings[test], k)
        task_demos = [tuple(pool[j] for j in idx) for idx in chosen]
        for begin in range(0, len(test), PACE_CHUNK):
            pace(done)
            rows = test[begin:begin + PACE_CHUNK]
            scored = service.score_texts(control, prompt, [texts[i] for i in rows], task_demos[begin:begin + PACE_CHUNK])
            logits[rows] = np.stack([s.logits for s in scored])
            done += len(rows)
        contextual[test] = service.calibrator(control, prompt).apply(logits[test], False)
    final = nearest_shot(base, demo_pool(texts, gold, labels), k, name)
    fitted = evaluate_fitted_calibration(f"{name}+calibrated", final, logits, gold, folds,
                                         service.calibrator(control, final))
    return [CandidateResult(name, ControlRecipe(final, None), contextual, gold), fitted]


class FewShot:
    """k-shot prompts, content-free calibrated and with fitted calibration: k = min(shots, 4) and
    k = shots (REFINE_MAX_SHOTS), where there are at least 2k items."""

    def plans(self, job: ControlJob) -> list[Plan]:
        return [Plan(f"{k}-shot", lambda k=k: evaluate_few_shot(f"{k}-shot", job.base, job.service, job.control,
                                                                job.texts, job.gold, job.folds, k, job.deadline),
                     items=len(job.texts))
                for k in sorted({min(job.shots, 4), job.shots}) if k > 0 and len(job.texts) >= 2 * k]


class NearestShot:
    """Each task shown its NEAREST_SHOTS most similar labelled items (single choice)."""

    def plans(self, job: ControlJob) -> list[Plan]:
        k = min(job.shots, NEAREST_SHOTS)
        if job.kind is not SINGLE or k <= 0 or len(job.texts) < 2 * k:
            return []
        return [Plan(f"{k}-nearest", lambda: evaluate_nearest_shot(
            f"{k}-nearest", job.base, job.service, job.control, job.texts, job.gold, job.folds, k, job.embeddings,
            job.deadline), items=len(job.texts))]
