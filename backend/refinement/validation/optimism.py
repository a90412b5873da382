"""How much a cross-validated score flatters the candidate chosen for it.

A job's choice is the best of many candidates scored on the same few hundred items, so its
score is partly luck, and the more candidates it beat, the more luck: comparing it with the
best of a small family (a later stage's) on raw scores favours the big family. The bootstrap
bias-corrected estimate (BBC-CV, Tsamardinos et al. 2018, Machine Learning 107) needs no
refitting, only the out-of-fold probabilities: choose the family's best on a bootstrap sample of
the items, score that choice on the items the sample left out, average over samples. Unlike
the per-fold correction of Tibshirani & Tibshirani (2009), it does not overcorrect when folds
are a few dozen items.
"""
from __future__ import annotations

import numpy as np

from .crossval import CandidateResult

ROUNDS = 200  # bootstrap samples: the estimate's own noise is well below a point of F1


def chosen_out_of_bag(family: list[CandidateResult], rounds: int = ROUNDS, seed: int = 0) -> float:
    """Mean label F1, on the items each bootstrap sample left out, of the family's best (label F1)
    on that sample: what choosing among `family` is worth on items it was not chosen on. Every
    result is judged on the same items."""
    kind, gold = family[0].kind, family[0].gold
    n, n_labels = len(gold), family[0].probs.shape[1]
    answers = [kind.answers(r.probs, r.threshold) for r in family]
    rng = np.random.default_rng(seed)
    scores = []
    for _ in range(rounds):
        sample = rng.integers(0, n, n)
        left = np.setdiff1d(np.arange(n), sample)
        if len(left) < 2:
            continue
        best = max(range(len(family)), key=lambda i: kind.answers_f1(gold[sample], answers[i][sample], n_labels))
        scores.append(kind.answers_f1(gold[left], answers[best][left], n_labels))
    return float(np.mean(scores)) if scores else family[0].metrics[kind.label_metric]


def selection_optimism(family: list[CandidateResult]) -> float:
    """The best label F1 of `family` on its items less what choosing among it is worth on new
    ones (chosen_out_of_bag): about 0 for one candidate, more the more candidates of similar
    worth it holds. A choice from `family` that is not its best on label F1 is lowered as much."""
    metric = family[0].kind.label_metric
    return max(r.metrics[metric] for r in family) - chosen_out_of_bag(family)
