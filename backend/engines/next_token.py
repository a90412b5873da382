"""Log-probabilities of allowed answers from what a remote server shows: a top-k list, or votes.

Both functions return one log-probability per allowed answer (not yet normalised over the set;
labeling/scoring.py does that), so the label is always chosen from the set, never parsed from
free text. Answers are compared after stripping whitespace: after "Answer:" a completions model
says " A" while a chat model says "A", and both mean the same option.
"""
from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

import numpy as np

# Additive smoothing of vote counts (Jeffreys prior): with 5 votes of 5 for one label it gives
# P = 5.5/6 rather than a certainty that 5 samples cannot support, and never log(0).
VOTE_PRIOR = 0.5
_TINY = 1e-12


def answer_key(text: str) -> str:
    return text.strip()


def unlisted_ceiling(top: Mapping[str, float], k: int) -> float:
    """The largest log-probability a token missing from the top-k list can have.

    It ranks below the k-th listed token, and it fits in the probability mass the list leaves
    over. Some servers append the sampled token to the k entries (llama.cpp does), so the k-th
    largest value is used, not the smallest."""
    values = sorted(top.values(), reverse=True)
    kth = values[min(k, len(values)) - 1]
    rest = 1.0 - sum(math.exp(v) for v in values)
    return min(kth, math.log(max(rest, _TINY)))


def allowed_logprobs(top: Mapping[str, float], choices: Sequence[str], k: int) -> np.ndarray:
    """log P(choice) for each allowed choice from one next-token top-k list.

    Tokens that strip to the same choice are summed. A choice missing from the list gets the
    ceiling of `unlisted_ceiling`: the most probability it could have had, so a missing option
    is never made less likely than the data allows (the top-k approximation errs towards
    uncertainty, not towards overconfidence). If no choice is listed, all get the same value and
    the distribution over the set is uniform."""
    if not top:
        raise ValueError("empty top-k list")
    listed: dict[str, list[float]] = {answer_key(c): [] for c in choices}
    for token, logprob in top.items():
        key = answer_key(token)
        if key in listed and logprob is not None and math.isfinite(logprob):
            listed[key].append(float(logprob))
    ceiling = unlisted_ceiling(top, k)
    out = []
    for choice in choices:
        values = listed[answer_key(choice)]
        out.append(float(np.logaddexp.reduce(values)) if values else ceiling)
    return np.array(out, dtype=np.float64)


def vote_logprobs(answers: Sequence[str | None], choices: Sequence[str]) -> np.ndarray:
    """log P(choice) estimated from sampled answers: (votes + ½) / (valid votes + ½·K).

    Answers that are not an allowed choice (None, or anything else) are discarded, never mapped
    to the nearest label. Raises ValueError when no answer is valid."""
    keys = [answer_key(c) for c in choices]
    counts = np.array([sum(1 for a in answers if a is not None and answer_key(a) == key) for key in keys],
                      dtype=np.float64)
    valid = counts.sum()
    if valid == 0:
        raise ValueError(f"none of {len(answers)} sampled answers is an allowed choice")
    return np.log((counts + VOTE_PRIOR) / (valid + VOTE_PRIOR * len(keys)))
