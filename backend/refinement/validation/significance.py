"""The paired significance test a candidate must pass to replace the current version."""
from __future__ import annotations

import math

import numpy as np


def mcnemar_exact(candidate_correct: np.ndarray, current_correct: np.ndarray) -> tuple[int, int, float]:
    """Exact (binomial) McNemar test on paired correctness.

    Returns (b, c, p): b = items only the candidate gets right, c = items only the current one
    gets right, p = two-sided p-value of b vs c under "both are equally good". We use it rather
    than a bootstrap because it is exact at the small sizes early ground truth has.
    """
    cand = np.asarray(candidate_correct, dtype=bool)
    cur = np.asarray(current_correct, dtype=bool)
    b = int((cand & ~cur).sum())
    c = int((~cand & cur).sum())
    n = b + c
    if n == 0:
        return b, c, 1.0
    k = min(b, c)
    tail = sum(math.comb(n, i) for i in range(k + 1)) / 2**n
    return b, c, float(min(1.0, 2 * tail))


def macro_f1_counts(gold: np.ndarray, pred: np.ndarray, n_labels: int) -> float:
    tp = np.bincount(gold[gold == pred], minlength=n_labels)
    pred_n = np.bincount(pred, minlength=n_labels)
    gold_n = np.bincount(gold, minlength=n_labels)
    denom = pred_n + gold_n
    present = denom > 0
    return float((2 * tp[present] / denom[present]).mean()) if present.any() else 0.0


def paired_bootstrap_macro_f1(
    gold: np.ndarray, candidate_pred: np.ndarray, current_pred: np.ndarray, n_labels: int,
    *, n_boot: int = 2000, seed: int = 0,
) -> tuple[float, float]:
    """One-sided paired bootstrap of macro-F1(candidate) − macro-F1(current).

    Returns (observed difference, p) where p is the share of resamples (items drawn with
    replacement, both systems judged on the same draw) in which the candidate is not better.
    Macro-F1 is what annotators feel on rare labels; accuracy alone rewards predicting the
    majority label, which is why selection uses this test rather than McNemar. Every
    resample's counts come at once (a job runs this test for every candidate, and again for
    each no-worse check of a refresh): the same resamples as one drawn at a time.
    """
    gold, cand, cur = (np.asarray(a, dtype=int) for a in (gold, candidate_pred, current_pred))
    observed = macro_f1_counts(gold, cand, n_labels) - macro_f1_counts(gold, cur, n_labels)
    draws = np.random.default_rng(seed).integers(0, len(gold), (n_boot, len(gold)))
    gold_n = _resampled_counts(draws, gold, n_labels)
    diff = (_resampled_macro_f1(draws, gold, gold_n, cand, n_labels)
            - _resampled_macro_f1(draws, gold, gold_n, cur, n_labels))
    return observed, (int((diff <= 0).sum()) + 1) / (n_boot + 1)


def _resampled_counts(draws: np.ndarray, labels: np.ndarray, n_labels: int,
                      keep: np.ndarray | None = None) -> np.ndarray:
    """Per-label counts of `labels` (where `keep`) in every resample (a row of item positions):
    one bincount over (resample, label) cells."""
    cells = (np.arange(len(draws))[:, None] * n_labels + labels[draws]).ravel()
    return np.bincount(cells if keep is None else cells[keep[draws].ravel()],
                       minlength=len(draws) * n_labels).reshape(len(draws), n_labels)


def _resampled_macro_f1(draws: np.ndarray, gold: np.ndarray, gold_n: np.ndarray, pred: np.ndarray,
                        n_labels: int) -> np.ndarray:
    """macro_f1_counts of every resample; `gold_n` (the gold counts) is shared by both systems."""
    tp = _resampled_counts(draws, gold, n_labels, gold == pred)
    denom = _resampled_counts(draws, pred, n_labels) + gold_n
    present = denom > 0
    f1 = np.where(present, 2 * tp / np.maximum(denom, 1), 0.0)
    count = present.sum(axis=1)
    return np.where(count > 0, f1.sum(axis=1) / np.maximum(count, 1), 0.0)


def _resample_weights(n: int, n_boot: int, seed: int) -> np.ndarray:
    """How often each of n items is drawn in each of n_boot resamples (n_boot × n), from one draw
    of the same stream as n_boot draws of n."""
    draws = np.random.default_rng(seed).integers(0, n, (n_boot, n))
    return _resampled_counts(draws, np.arange(n), n)


def paired_bootstrap_mean(diffs: np.ndarray, *, n_boot: int = 2000, seed: int = 0) -> tuple[float, float]:
    """One-sided paired bootstrap of mean(diffs) > 0; returns (observed mean, p)."""
    diffs = np.asarray(diffs, dtype=np.float64)
    rng = np.random.default_rng(seed)
    means = diffs[rng.integers(0, len(diffs), (n_boot, len(diffs)))].mean(axis=1)
    return float(diffs.mean()), float(((means <= 0).sum() + 1) / (n_boot + 1))


def paired_bootstrap_multilabel_f1(
    gold: np.ndarray, candidate_pred: np.ndarray, current_pred: np.ndarray, *, n_boot: int = 2000, seed: int = 0,
    average: str = "macro",
) -> tuple[float, float]:
    """One-sided paired bootstrap of multi-label F1(candidate) − F1(current), macro or micro averaged.

    Inputs are items × labels 0/1 matrices; items are resampled (an item's labels stay together,
    they were annotated together). Per-label counts of a resample are a weighted sum of per-item
    counts, so the 2,000 resamples cost a few matrix products.
    """
    from ...metrics.multi_label import macro_f1_from_counts, micro_f1_from_counts

    f1_from_counts = micro_f1_from_counts if average == "micro" else macro_f1_from_counts
    gold = np.asarray(gold, dtype=bool)
    n = len(gold)

    def cells(pred):
        pred = np.asarray(pred, dtype=bool)
        return [(gold & pred).astype(float), (~gold & pred).astype(float), (gold & ~pred).astype(float)]

    cand, cur = cells(candidate_pred), cells(current_pred)
    observed = f1_from_counts(*(c.sum(0) for c in cand)) - f1_from_counts(*(c.sum(0) for c in cur))
    weights = _resample_weights(n, n_boot, seed).astype(float)
    cand_counts = [weights @ c for c in cand]  # n_boot × labels each
    cur_counts = [weights @ c for c in cur]
    not_better = sum(
        f1_from_counts(*(c[i] for c in cand_counts)) - f1_from_counts(*(c[i] for c in cur_counts)) <= 0
        for i in range(n_boot)
    )
    return observed, (not_better + 1) / (n_boot + 1)


def holm_rejections(p_values: list[float], alpha: float) -> list[bool]:
    """Holm–Bonferroni: which of these tests are significant with a family-wise error of `alpha`.

    A job compares ~10 candidates, each twice, and ships the best significant one: tested one by
    one at 0.05, a candidate that is better by chance alone passes far more often than 5 % of the time."""
    order = sorted(range(len(p_values)), key=lambda i: p_values[i])
    out = [False] * len(p_values)
    for rank, i in enumerate(order):
        if p_values[i] >= alpha / (len(p_values) - rank):
            break
        out[i] = True
    return out


def paired_bootstrap_span_f1(candidate: np.ndarray, current: np.ndarray, *, n_boot: int = 2000,
                             seed: int = 0) -> tuple[float, float]:
    """One-sided paired bootstrap of span micro-F1(candidate) − micro-F1(current).

    Inputs hold one row per text: (exact true positives, spans predicted, gold spans); micro-F1
    is 2·TP / (predicted + gold) over the texts. Texts are resampled, both systems judged on the
    same draw; a resample's counts are a weighted sum of the rows."""
    cand, cur = np.asarray(candidate, dtype=np.float64), np.asarray(current, dtype=np.float64)

    def f1(counts: np.ndarray) -> np.ndarray:
        return 2 * counts[..., 0] / np.maximum(counts[..., 1] + counts[..., 2], 1)

    observed = float(f1(cand.sum(axis=0)) - f1(cur.sum(axis=0)))
    weights = _resample_weights(len(cand), n_boot, seed)
    diffs = f1(weights @ cand) - f1(weights @ cur)
    return observed, float(((diffs <= 0).sum() + 1) / (n_boot + 1))
