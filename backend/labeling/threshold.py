"""The decision threshold of a multiple-choice control, fitted on ground truth.

A calibrated P(applies) says how likely a label is, not whether to tick it: at 0.5 a rare label
is hardly ever chosen even when the model ranks it well, and a model calibrated on many labels
ticks about one per item. The F1-optimal cut of a calibrated score lies near half the F1 it can
reach (Lipton et al., 2014), well below 0.5. One threshold is fitted for all labels, the one of
best micro-F1 on held-out probabilities; refinement keeps it only where, cross-fitted, it beats
0.5 (with a few dozen labels it sometimes does not). Per-label thresholds were measured and not
adopted (docs/benchmarks.md): with tens of positives per label, each label's own F1-optimal cut
drifts towards ticking it everywhere, and micro-F1 (and often macro-F1) on new items drops below
the shared cut's. Per-label differences are the calibration's job (per-label bias and scale).
"""
from __future__ import annotations

import numpy as np

GRID = np.round(np.arange(0.02, 0.981, 0.02), 2)


def fit_threshold(probs: np.ndarray, gold: np.ndarray) -> float:
    """The grid threshold of best micro-F1 for items × labels `probs` against 0/1 `gold`; the
    middle of the best plateau, so that it does not hug one item's probability."""
    p = np.asarray(probs, dtype=np.float64).ravel()
    y = np.asarray(gold, dtype=bool).ravel()
    chosen = p[None, :] >= GRID[:, None]
    tp = (chosen & y).sum(1)
    f1 = 2 * tp / np.maximum(chosen.sum(1) + y.sum(), 1)
    best = np.flatnonzero(f1 >= f1.max() - 1e-12)
    return float(GRID[best[len(best) // 2]])


def cross_fitted_threshold(probs: np.ndarray, gold: np.ndarray, folds: np.ndarray) -> np.ndarray:
    """One threshold per item, fitted on the other folds' items only: what judges a recipe's
    threshold on items it was not fitted on."""
    probs, gold = np.asarray(probs, dtype=np.float64), np.asarray(gold)
    out = np.full(len(probs), 0.5)
    for f in np.unique(folds):
        test = folds == f
        if (~test).any():
            out[test] = fit_threshold(probs[~test], gold[~test])
    return out
