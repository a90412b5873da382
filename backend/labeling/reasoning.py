"""Reason-then-select and self-consistency: free text first, then the label set scored after it.

The model writes a short rationale after the text ("Reasoning: …", one line), and the allowed
labels are scored after that rationale exactly as without one, so the answer is still always a
label with a real probability; the rationale is never parsed. With `samples` > 1 it writes
several rationales at a temperature (self-consistency, Wang et al. 2023) and the label
distributions after each are averaged: a vote that keeps each sample's confidence instead of
counting only its argmax.

A rationale costs generated tokens, one decode each, on every task it serves: many times the
cost of the label scores alone (docs/benchmarks.md). So it is a recipe option that a refinement
job adopts only where it pays for that cost (refinement/candidates/reasoning_first.py), never
the default.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..settings import MAX_REASONING_SAMPLES, MAX_REASONING_TOKENS
from .calibration import sigmoid

REASONING_CUE = "\nReasoning:"
REASONING_HINT = "First give a short reason after 'Reasoning:', then the answer."


@dataclass(frozen=True)
class Reasoning:
    samples: int = 1  # 1: reason-then-select (greedy); more: self-consistency
    max_tokens: int = 48
    temperature: float = 0.0  # 0 is greedy; self-consistency needs > 0 to get different rationales

    def __post_init__(self):
        if not 1 <= self.samples <= MAX_REASONING_SAMPLES:
            raise ValueError(f"reasoning.samples must be 1..{MAX_REASONING_SAMPLES}, not {self.samples}")
        if not 1 <= self.max_tokens <= MAX_REASONING_TOKENS:
            raise ValueError(f"reasoning.max_tokens must be 1..{MAX_REASONING_TOKENS}, not {self.max_tokens}")
        if not 0.0 <= self.temperature <= 2.0 or (self.samples > 1 and self.temperature == 0.0):
            raise ValueError(f"reasoning.temperature must be in [0, 2] and above 0 with several samples, "
                             f"not {self.temperature}")

    @property
    def name(self) -> str:
        return "reason" if self.samples == 1 else f"reason-x{self.samples}"

    def seeds(self) -> range:
        """One fixed seed per sample: a task gets the same rationales (and scores) every time."""
        return range(self.samples)

    def to_dict(self) -> dict:
        return {"samples": self.samples, "max_tokens": self.max_tokens, "temperature": self.temperature}

    @classmethod
    def from_dict(cls, data: dict) -> "Reasoning":
        try:
            return cls(int(data.get("samples", 1)), int(data.get("max_tokens", 48)),
                       float(data.get("temperature", 0.0)))
        except (TypeError, AttributeError) as err:
            raise ValueError(f"reasoning must be an object of samples, max_tokens, temperature: {err}") from err


def clean_rationale(text: str) -> str:
    """One line of the model's text, so it cannot start a 'Label:' line of its own."""
    return " ".join(str(text).split("\n", 1)[0].split())


def pool_samples(logits: list[np.ndarray], multiple: bool) -> np.ndarray:
    """The label logits of the mean distribution over samples (log of the mean probability for a
    single choice; the logit of the mean P(yes) per label for multiple choice)."""
    stacked = np.stack(logits)
    if len(stacked) == 1:
        return stacked[0]
    if multiple:
        p = np.clip(sigmoid(stacked).mean(axis=0), 1e-12, 1 - 1e-12)
        return np.log(p) - np.log1p(-p)
    m = stacked.max(axis=0)
    return m + np.log(np.exp(stacked - m).mean(axis=0))
