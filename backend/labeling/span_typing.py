"""The typing head of a `<Labels>` control: a logistic regression over MiniLM embeddings of each
mention the LLM placed, which re-types it.

The small LLM places mentions well (every line is text of the task) but types them poorly: it
says one kind for most of them. The annotations of a project show which kind each mention is, so a
head trained on them types the LLM's mentions instead, alone or pooled with the LLM's own type
distribution. What it embeds is a mention alone ("Paris"), the mention in its text
(`"Paris" in: <text>`, which tells the city from the person), or both vectors side by side.

A head with a "none" class is also trained on mentions the LLM placed that annotators did not
mark, so it can drop them; without one the LLM's own "none" probability is kept and the head
only shares out the rest among the labels. The weights are plain numbers stored with the
version, never pickled.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np

from .calibration import softmax
from .head import EMBEDDER_NAME, mix, pool

INPUTS = ("mention", "context", "both")  # what is embedded per mention
POOLINGS = ("log", "mix")


def mention_in_text(mention: str, text: str) -> str:
    return f'"{mention}" in: {text}'


def typing_inputs(inputs: str, pairs: Sequence[tuple[str, str]]) -> list[list[str]]:
    """The strings to embed for (mention, its text) pairs: one list per part of the feature vector."""
    if inputs not in INPUTS:
        raise ValueError(f"typing head inputs must be one of {INPUTS}, not {inputs!r}")
    parts = []
    if inputs in ("mention", "both"):
        parts.append([m for m, _ in pairs])
    if inputs in ("context", "both"):
        parts.append([mention_in_text(m, text) for m, text in pairs])
    return parts


def pair_features(embedder, inputs: str, pairs: Sequence[tuple[str, str]]) -> np.ndarray:
    """One row per (mention, its text) pair: its embedding(s) as `inputs` says, side by side."""
    if not pairs:
        return np.zeros((0, 0))
    return np.hstack([embedder.encode(part) for part in typing_inputs(inputs, pairs)])


def typing_features(embedder, inputs: str, mentions: Sequence[str], text: str) -> np.ndarray:
    """One row per mention of one text."""
    return pair_features(embedder, inputs, [(m, text) for m in mentions])


@dataclass(frozen=True)
class TypingHead:
    """Weights over the control's labels in order, then "none" when `has_none`. `weight_llm` is
    the LLM's share in the pool (0: the head alone)."""

    coef: tuple[tuple[float, ...], ...]
    intercept: tuple[float, ...]
    inputs: str = "context"
    has_none: bool = False
    weight_llm: float = 0.0
    pooling: str = "log"
    embedder: str = EMBEDDER_NAME

    def head_probs(self, features: np.ndarray) -> np.ndarray:
        return softmax(np.asarray(features) @ np.asarray(self.coef).T + np.asarray(self.intercept))

    def apply(self, llm_probs: np.ndarray, features: np.ndarray) -> np.ndarray:
        """The LLM's rows (labels, then "none") re-typed: the same shape, rows summing to 1."""
        llm_probs = np.asarray(llm_probs, dtype=np.float64)
        if not len(llm_probs):
            return llm_probs
        head = self.head_probs(features)
        combine = mix if self.pooling == "mix" else pool
        if self.has_none:
            return combine(llm_probs, head, self.weight_llm)
        none = llm_probs[:, -1:]
        labels = llm_probs[:, :-1] / np.maximum(llm_probs[:, :-1].sum(axis=1, keepdims=True), 1e-12)
        return np.hstack([combine(labels, head, self.weight_llm) * (1.0 - none), none])

    def to_dict(self) -> dict:
        return {"inputs": self.inputs, "has_none": self.has_none, "weight_llm": self.weight_llm,
                "pooling": self.pooling, "embedder": self.embedder,
                "intercept": [round(v, 6) for v in self.intercept],
                "coef": [[round(v, 6) for v in row] for row in self.coef]}

    @classmethod
    def from_dict(cls, data: dict) -> "TypingHead":
        if data.get("inputs", "context") not in INPUTS or data.get("pooling", "log") not in POOLINGS:
            raise ValueError(f"typing head inputs must be one of {INPUTS} and pooling one of {POOLINGS}")
        return cls(coef=tuple(tuple(float(v) for v in row) for row in data["coef"]),
                   intercept=tuple(float(v) for v in data["intercept"]),
                   inputs=str(data.get("inputs", "context")), has_none=bool(data.get("has_none", False)),
                   weight_llm=float(data.get("weight_llm", 0.0)), pooling=str(data.get("pooling", "log")),
                   embedder=str(data.get("embedder", EMBEDDER_NAME)))
