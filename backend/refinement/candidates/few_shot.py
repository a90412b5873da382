"""Few-shot candidates: demonstrations from the ground truth, fixed (k-shot) or per task (k-nearest).

Fixed demos are picked label by label in turn (so every label is shown, rare ones included) in a
seeded random order, which keeps a refinement reproducible. A nearest-demo prompt carries the
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
from ..validation.crossval import (PACE_CHUNK, CandidateResult, evaluate_fitted_calibration, pace_budget,
                                   score_as_shipped)


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
    it shows, so an average over draws says little about the one draw that ships (on
    product_reviews, 4-shot cross-validated at 0.475 macro-F1 over fold draws; the draw that
    shipped made 0.362 on the test split). Every item is scored with the prompt that ships, except
    that a demonstration is scored with the other k − 1 (no item sees its own label). One shared
    prefix, so this is also cheaper than a prompt per fold."""
    texts = list(texts)

    def prompt_with(indices) -> PromptVersion:
        return few_shot(base, demos_of(texts, gold, control.labels, indices), name)

    picked = pick_demo_indices(gold, shots, seed=len(texts))
    final, logits, contextual = score_as_shipped(service, control, texts, picked, prompt_with, multiple=False,
                                                 deadline=deadline)
    fitted = evaluate_fitted_calibration(f"{name}+calibrated", final, logits, gold, folds,
                                         service.calibrator(control, final))
    return [CandidateResult(name, ControlRecipe(final, None), contextual, gold), fitted]


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
