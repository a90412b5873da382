"""A deterministic fake engine for pure-logic tests (never proof that labeling works).

It scores a continuation by how often its words occur in the item text, so a test can predict
the outcome without a model.
"""
from __future__ import annotations

from typing import Sequence

import numpy as np

from .base import Branch, Capabilities


class ScriptedEngine:
    model_id = "scripted"
    capabilities = Capabilities(exact_logprobs=True, max_context=4096)

    def __init__(self, rationales: tuple[str, ...] = ()):
        self.calls: list[tuple[str, str]] = []
        self.rationales = rationales  # what rationale() writes: seed i gets rationales[i % len]

    def rationale(self, prefix: str, item: str, *, max_tokens: int, temperature: float = 0.0, seed: int = 0) -> str:
        return self.rationales[seed % len(self.rationales)] if self.rationales else ""

    def count_tokens(self, text: str) -> int:
        return len(text.split())

    def score(self, prefix: str, item: str, branches: Sequence[Branch]) -> list[np.ndarray]:
        self.calls.append((prefix, item))
        words = item.lower().split()
        out = []
        for branch in branches:
            values = []
            for cont in branch.continuations:
                target = cont.strip().lower()
                if branch.suffix:  # yes/no question: "yes" when the quoted label is in the text
                    label = branch.suffix.split('"')[1].lower()
                    hit = label in words
                    values.append(-0.2 if (target == "yes") == hit else -2.0)
                else:
                    values.append(-3.0 + 2.0 * words.count(target))
            out.append(np.array(values, dtype=np.float64))
        return out
