"""What the request path needs from an LLM: exact log-likelihoods of given continuations.

An engine never generates free text for a label: it is asked for the log-likelihood of each
allowed label's tokens after a prompt, so the answer is always in the label set and carries a
real probability. Engines state their capabilities up front.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol, Sequence

import numpy as np

from ..labeling.prompt import Branch


@dataclass(frozen=True)
class Capabilities:
    exact_logprobs: bool  # full-sequence log-likelihood of every continuation
    max_context: int


class LabelEngine(Protocol):
    model_id: str
    capabilities: Capabilities

    def count_tokens(self, text: str) -> int:
        """Tokens `text` takes when it follows other text (no BOS)."""

    def score(self, prefix: str, item: str, branches: Sequence[Branch]) -> list[np.ndarray]:
        """Log-likelihood of each continuation of each branch, given prefix + item + branch.suffix.

        The prefix is shared by many calls and should be cached; one array per branch, one value
        per continuation, in order.
        """
