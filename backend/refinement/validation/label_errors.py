"""Which human labels are most likely wrong, from out-of-fold probabilities (confident learning).

Every refinement job already scores each labelled item with models that never saw its label (the
candidates' out-of-fold probabilities). Confident learning (Northcutt et al., 2021) reads them
without a noise model: a label counts as confidently present in an item when the item's
probability for it reaches the label's threshold, its mean probability over the items humans
gave it (each label is judged against its own typical confidence, so a model that under-scores
a rare label does not flag all of it). The suggestion for an item is the most probable of its
confident labels, or the model's answer when none is; an item whose suggestion is not its label
is a suspect (`confident` when the suggestion was a confident label). Confident suspects come
first, each group ranked by the probability of the given label (self-confidence), lowest first. Multiple choice is the same,
label by label, as yes/no questions.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class LabelIssue:
    """One suspect: `position` in the items given, the labels a human gave and the ones the
    model's confident labels suggest, the probability of the given labels (self-confidence; for
    multiple choice the least confident of its yes/no answers) and of the suggested ones."""

    position: int
    given: tuple[int, ...]
    suggested: tuple[int, ...]
    p_given: float
    p_suggested: float
    confident: bool


def class_thresholds(probs: np.ndarray, gold: np.ndarray) -> np.ndarray:
    """Per label, the mean probability of that label over the items labelled with it; a label no
    item was given gets 1.0 (it is never confidently present: nothing says what is typical)."""
    k = probs.shape[1]
    out = np.ones(k)
    for j in range(k):
        given = gold == j
        if given.any():
            out[j] = float(probs[given, j].mean())
    return out


def single_label_issues(probs: np.ndarray, gold: np.ndarray) -> list[LabelIssue]:
    """Single choice: `probs` items × labels (each row a distribution), `gold` a label index per
    item. The suspects, most likely wrong first."""
    probs, gold = np.asarray(probs, dtype=np.float64), np.asarray(gold)
    if len(gold) == 0:
        return []
    confident = probs >= class_thresholds(probs, gold)[None, :] - 1e-12
    sure = confident.any(axis=1)
    suggested = np.where(sure, np.where(confident, probs, -1.0).argmax(axis=1), probs.argmax(axis=1))
    issues = [LabelIssue(int(i), (int(gold[i]),), (int(suggested[i]),), float(probs[i, gold[i]]),
                         float(probs[i, suggested[i]]), bool(sure[i])) for i in np.flatnonzero(suggested != gold)]
    return ranked(issues)


def multi_label_issues(probs: np.ndarray, gold: np.ndarray, threshold: np.ndarray | float = 0.5) -> list[LabelIssue]:
    """Multiple choice: `probs` items × labels P(yes), `gold` the 0/1 matrix humans gave, the
    model's decision threshold per item (or one). Each label is its own yes/no question with its
    own two thresholds; the suggestion changes the answers whose suggested answer differs."""
    probs, gold = np.asarray(probs, dtype=np.float64), np.asarray(gold).astype(bool)
    if len(gold) == 0:
        return []
    n, k = probs.shape
    flipped, sure = np.zeros((n, k), dtype=bool), np.zeros((n, k), dtype=bool)
    decided = probs >= np.broadcast_to(np.asarray(threshold, dtype=np.float64).reshape(-1, 1), (n, 1))
    p_answer = np.where(gold, probs, 1.0 - probs)  # the probability of the answer given
    for j in range(k):
        yes, no = probs[:, j], 1.0 - probs[:, j]
        given = gold[:, j]
        t_yes = float(yes[given].mean()) if given.any() else 1.0
        t_no = float(no[~given].mean()) if (~given).any() else 1.0
        confident_yes, confident_no = yes >= t_yes - 1e-12, no >= t_no - 1e-12
        sure[:, j] = confident_yes | confident_no
        says_yes = np.where(sure[:, j], confident_yes & (~confident_no | (yes >= no)), decided[:, j])
        flipped[:, j] = says_yes != given
    issues = []
    for i in np.flatnonzero(flipped.any(axis=1)):
        suggested = gold[i] ^ flipped[i]
        issues.append(LabelIssue(int(i), tuple(int(j) for j in np.flatnonzero(gold[i])),
                                 tuple(int(j) for j in np.flatnonzero(suggested)),
                                 float(p_answer[i].min()), float((1.0 - p_answer[i][flipped[i]]).min()),
                                 bool(sure[i][flipped[i]].all())))
    return ranked(issues)


def ranked(issues: list[LabelIssue]) -> list[LabelIssue]:
    """Confident suspects first, then the items the model merely leans away from; each group by
    the probability of the given label, lowest first."""
    return sorted(issues, key=lambda s: (not s.confident, s.p_given, -s.p_suggested))


def label_issues(probs: np.ndarray, gold: np.ndarray, multiple: bool,
                 threshold: np.ndarray | float | None = None) -> list[LabelIssue]:
    if multiple:
        return multi_label_issues(probs, gold, 0.5 if threshold is None else threshold)
    return single_label_issues(probs, gold)
