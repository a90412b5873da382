"""Candidate recipes built from ground truth: demonstrations for a few-shot prompt.

Fixed demos are picked label by label in turn (so every label is shown, rare ones included) in a
seeded random order, which keeps a refinement reproducible. A nearest-demo prompt carries the
whole labelled pool and shows each task its most similar examples (backend/labeling/demos.py).
Demo texts are clipped (DEMO_MAX_CHARS) so demonstrations never crowd the task out of the context.
"""
from __future__ import annotations

import random
from dataclasses import replace
from typing import Sequence

from ..labeling.prompt import Demo, PromptVersion, clip_demo


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
