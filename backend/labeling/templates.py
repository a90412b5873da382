"""Instruction templates for version 0, and the zero-label criterion that picks one per control.

A small base model's zero-shot accuracy moves by many points with the wording of its instruction,
and which wording suits a label set cannot be known in advance. Without any label, the model's
own answers on the project's tasks still tell: the template whose calibrated answers carry the
most mutual information between the text and the label (Sorensen et al., 2022: confident on
each text, yet spread over the labels across texts) is the one most likely to be right. On a few
dozen texts that estimate is noisy, so a template replaces the one served only when it has more
mutual information in nearly every bootstrap resample of the texts (`advantage`). The templates
are generic phrasings written before any measurement; none names a domain.
"""
from __future__ import annotations

import numpy as np

from .label_config import ChoiceControl
from .prompt import PromptVersion, default_instructions, shown_labels

DEFAULT = "default"
# name → instruction ({options}: the labels as the prompt shows them); DEFAULT is the built-in one
TEMPLATES: dict[str, str | None] = {
    DEFAULT: None,
    "plain": "Classify the text into one of these labels: {options}.",
    "best": "Choose the label that best describes the text. Possible labels: {options}.",
    "answer": "Read the text and answer with one of: {options}.",
    "which": "Which of these labels fits the text: {options}?",
}


def selectable(control: ChoiceControl) -> bool:
    """Single-choice <Choices> only: a rating or a taxonomy has its own instruction, and a
    multi-choice control's yes/no answers have no one-of-K distribution to measure."""
    return control.kind == "choices" and not control.multiple and len(control.labels) >= 2


def template_instructions(name: str, control: ChoiceControl) -> str:
    if name not in TEMPLATES:
        raise KeyError(f"unknown template {name!r}; one of {', '.join(TEMPLATES)}")
    template = TEMPLATES[name]
    if template is None:
        return default_instructions(control)
    return template.format(options=", ".join(shown_labels(control.labels).values()))


def template_wording(prompt: PromptVersion, control: ChoiceControl) -> bool:
    """Whether `prompt`'s instructions are the built-in ones or a template's: chosen without
    labels, so they learnt nothing from the project's ground truth (a rewritten one did)."""
    return prompt.instructions is None or prompt.instructions in {template_instructions(name, control)
                                                                    for name in TEMPLATES}


def template_prompt(name: str, control: ChoiceControl) -> PromptVersion:
    """Version 0's prompt with template `name` (the default template is the built-in prompt itself)."""
    if name == DEFAULT:
        return PromptVersion()
    return PromptVersion(name=f"v0-{name}", instructions=template_instructions(name, control))


def mutual_information(probabilities: np.ndarray) -> float:
    """I(text; label) of a prompt's answers on unlabelled texts, in nats: the entropy of the
    average answer minus the average entropy of each answer."""
    p = np.clip(np.asarray(probabilities, dtype=float), 1e-12, 1.0)
    p = p / p.sum(axis=1, keepdims=True)
    mean = p.mean(axis=0)
    return float(-(mean * np.log(mean)).sum() + (p * np.log(p)).sum(axis=1).mean())


def advantage(challenger: np.ndarray, incumbent: np.ndarray, rounds: int = 1000, seed: int = 0) -> float:
    """The share of bootstrap resamples of the texts (the same resample for both) on which the
    challenger's answers carry more mutual information than the incumbent's."""
    rng = np.random.default_rng(seed)
    n = len(challenger)
    wins = 0
    for _ in range(rounds):
        rows = rng.integers(0, n, n)
        wins += mutual_information(challenger[rows]) > mutual_information(incumbent[rows])
    return wins / rounds
