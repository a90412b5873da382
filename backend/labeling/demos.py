"""Per-task demonstrations: the labelled examples most similar to a task's text (kNN by MiniLM cosine).

A small model copies the examples it is shown more than it follows instructions, so showing it the
nearest labelled neighbours of each task turns its in-context learning into a soft nearest-neighbour
vote that the prompt still conditions. The most similar demo is placed last, next to the task.
"""
from __future__ import annotations

import threading

import numpy as np

from .head import Embedder
from .prompt import Demo, clip_demo


def nearest_indices(pool_embeddings: np.ndarray, text_embeddings: np.ndarray, k: int,
                    exclude: list[set[int]] | None = None) -> list[list[int]]:
    """Per text, the indices of its `k` most similar pool items, least similar first (ties: pool order);
    `exclude[i]` are pool items text i may not see."""
    k = min(k, len(pool_embeddings))
    if k <= 0:
        return [[] for _ in range(len(text_embeddings))]
    sims = np.asarray(text_embeddings) @ np.asarray(pool_embeddings).T
    out = []
    for i, row in enumerate(sims):
        banned = exclude[i] if exclude else set()
        top = [int(j) for j in np.argsort(-row, kind="stable") if int(j) not in banned][:k]
        out.append(top[::-1])
    return out


class NearestDemos:
    """Embeds each demo pool once (pools are part of a version, so they repeat across requests)."""

    def __init__(self, embedder: Embedder, max_pools: int = 16):
        self.embedder = embedder
        self.max_pools = max_pools
        self._pools: dict[tuple[Demo, ...], np.ndarray] = {}
        self._lock = threading.Lock()

    def pool_embeddings(self, pool: tuple[Demo, ...]) -> np.ndarray:
        with self._lock:
            cached = self._pools.get(pool)
        if cached is None:
            cached = self.embedder.encode([d.text for d in pool])
            with self._lock:
                if len(self._pools) >= self.max_pools:
                    self._pools.pop(next(iter(self._pools)))
                self._pools[pool] = cached
        return cached

    def for_texts(self, pool: tuple[Demo, ...], texts: list[str], k: int,
                  text_embeddings: np.ndarray | None = None, *, leave_out_self: bool = False) -> list[tuple[Demo, ...]]:
        """`leave_out_self`: a text never sees its own labelled copy (judging a version on the items
        it was built from would otherwise measure its memory, not its skill)."""
        if not pool or k <= 0:
            return [() for _ in texts]
        emb = self.embedder.encode(list(texts)) if text_embeddings is None else text_embeddings
        exclude = None
        if leave_out_self:
            where: dict[str, set[int]] = {}
            for j, demo in enumerate(pool):
                where.setdefault(demo.text, set()).add(j)
            exclude = [where.get(clip_demo(t), set()) for t in texts]
        return [tuple(pool[i] for i in idx) for idx in nearest_indices(self.pool_embeddings(pool), emb, k, exclude)]
