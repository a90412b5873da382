"""Rendered prompt + text → one logit per label, from label log-likelihoods (never parsed free text).

Single choice: the label log-likelihoods normalised over the label set (log-softmax), so the
argmax is always an allowed label. Multiple choice: per label, log P(Yes) − log P(No).
An engine that scores only the next token gets letter codes when the labels need them
(`uses_codes`); the logits are then those of the codes, in label order.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..engines.base import LabelEngine
from .label_config import ChoiceControl
from .prompt import RenderedPrompt

# Room kept free in the context for the label tokens and the tokenizer's boundary effects.
CONTEXT_MARGIN_TOKENS = 16


@dataclass(frozen=True)
class FittedText:
    text: str
    truncated: bool


def uses_codes(engine: LabelEngine, control: ChoiceControl) -> bool:
    """Whether `control` must be rendered with letter codes for `engine`.

    Only for single choice on a next-token-only engine, unless every label is provably one token
    of its own (the engine's tokenizer is exact) and labels stay distinct once stripped. Yes/No
    questions of multiple choice are single tokens already."""
    caps = engine.capabilities
    if control.multiple or not caps.next_token_only:
        return False
    if not caps.exact_token_counts:
        return True
    distinct = len({label.strip() for label in control.labels}) == len(control.labels)
    return not (distinct and all(engine.count_tokens(f" {label}") == 1 for label in control.labels))


def fit_text(engine: LabelEngine, rendered: RenderedPrompt, text: str) -> FittedText:
    """Cut `text` (keeping its head) so prefix + item + longest branch fit the engine's context,
    with room for the rationale when the prompt reasons first."""
    longest_branch = max(
        engine.count_tokens(b.suffix) + max(engine.count_tokens(c) for c in b.continuations)
        for b in rendered.branches
    )
    item, rationale = (rendered.with_rationale(""), rendered.reasoning.max_tokens) if rendered.reasoning else (rendered, 0)
    fixed = engine.count_tokens(rendered.prefix) + engine.count_tokens(item.item("")) + longest_branch + rationale
    budget = engine.capabilities.max_context - fixed - CONTEXT_MARGIN_TOKENS
    if budget <= 0:
        from ..errors import EngineError

        raise EngineError("the prompt prefix alone does not fit the model's context", field="LLM_N_CTX")
    n_tokens = engine.count_tokens(text)
    if n_tokens <= budget:
        return FittedText(text, False)
    cut = text
    while n_tokens > budget and cut:
        cut = cut[: max(0, int(len(cut) * budget / n_tokens * 0.95))]
        n_tokens = engine.count_tokens(cut)
    return FittedText(cut, True)


def label_logits(engine: LabelEngine, rendered: RenderedPrompt, control: ChoiceControl, text: str) -> np.ndarray:
    """One logit per label of `control` for `text` (already cleaned and fitted)."""
    return _to_logits(engine.score(rendered.prefix, rendered.item(text), rendered.branches), control)


def label_logits_with_state(engine: LabelEngine, rendered: RenderedPrompt, control: ChoiceControl,
                            text: str) -> tuple[np.ndarray, np.ndarray]:
    """`label_logits` and the model's final hidden state where a single-choice answer is read
    (an engine with `capabilities.answer_state`): what a head may read beside the embedding."""
    if control.multiple:
        raise ValueError("the state at the answer is read for single choice only")
    scores, states = engine.score_with_state(rendered.prefix, rendered.item(text), rendered.branches)
    return _to_logits(scores, control), np.asarray(states[0], dtype=np.float32)


def _to_logits(scores: list[np.ndarray], control: ChoiceControl) -> np.ndarray:
    if control.multiple:
        return np.array([s[0] - s[1] for s in scores], dtype=np.float64)
    ll = scores[0]
    m = ll.max()
    return ll - (m + np.log(np.exp(ll - m).sum()))
