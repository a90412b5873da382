"""What the request path needs from an LLM: log-likelihoods of given continuations.

An engine never generates free text for a label: it is asked for the log-likelihood of each
allowed label's tokens after a prompt, so the answer is always in the label set and carries a
real probability. Engines state their capabilities up front, and the labeling layer adapts:

- the local llama.cpp engine scores whole continuations exactly (any number of tokens);
- a remote OpenAI-compatible server only shows one next-token distribution per request
  (`next_token_only`), so the prompt lists the labels with one-token codes ("A) …") whenever a
  label is not a single token of its own, and only the top-k of that distribution is visible
  (`exact_logprobs=False`), or none at all (`probability_source="votes"`).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol, Sequence

import numpy as np

PROBABILITY_SOURCES = ("exact", "top_logprobs", "votes")


@dataclass(frozen=True)
class Branch:
    """A suffix after the item and the continuations scored after it (label tokens, or Yes/No):
    one branch of the label tree an engine scores after a prompt."""

    suffix: str
    continuations: tuple[str, ...]


@dataclass(frozen=True)
class Capabilities:
    exact_logprobs: bool  # full-sequence log-likelihood of every continuation
    max_context: int
    # Only the next-token distribution after the prompt is scored: every continuation must be a
    # distinct single token (the prompt then uses letter codes for labels that are not).
    next_token_only: bool = False
    exact_token_counts: bool = True  # count_tokens is the model's tokenizer, not an estimate
    parallel_requests: int = 1  # texts the labeling service may score at the same time
    probability_source: str = "exact"  # exact | top_logprobs | votes (shown in predictions unless exact)
    # score_with_state: the model's final hidden state where it reads the answer (the state the
    # label scores come from), for a head to read beside the sentence embedding
    answer_state: bool = False


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
