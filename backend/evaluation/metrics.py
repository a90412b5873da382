"""Plain metric functions over gold and predicted label indices (single-label classification)."""
from __future__ import annotations

import numpy as np


def accuracy(gold: np.ndarray, pred: np.ndarray) -> float:
    gold, pred = np.asarray(gold), np.asarray(pred)
    return float((gold == pred).mean()) if gold.size else 0.0


def macro_f1(gold: np.ndarray, pred: np.ndarray, n_labels: int) -> float:
    """Mean F1 over the labels that occur in gold or predictions (sklearn's default behaviour)."""
    gold, pred = np.asarray(gold), np.asarray(pred)
    f1s = []
    for k in range(n_labels):
        tp = int(((pred == k) & (gold == k)).sum())
        fp = int(((pred == k) & (gold != k)).sum())
        fn = int(((pred != k) & (gold == k)).sum())
        if tp + fp + fn == 0:
            continue
        f1s.append(2 * tp / (2 * tp + fp + fn))
    return float(np.mean(f1s)) if f1s else 0.0


def expected_calibration_error(gold: np.ndarray, probs: np.ndarray, n_bins: int = 10) -> float:
    """Top-label ECE with equal-width bins: Σ_b |B|/N · |accuracy(B) − confidence(B)|."""
    probs = np.asarray(probs, dtype=np.float64)
    gold = np.asarray(gold)
    if not gold.size:
        return 0.0
    conf = probs.max(axis=1)
    correct = probs.argmax(axis=1) == gold
    edges = np.linspace(0.0, 1.0, n_bins + 1)
    bins = np.clip(np.digitize(conf, edges[1:-1], right=True), 0, n_bins - 1)
    ece = 0.0
    for b in range(n_bins):
        mask = bins == b
        if mask.any():
            ece += mask.mean() * abs(correct[mask].mean() - conf[mask].mean())
    return float(ece)


def summarize(gold: np.ndarray, probs: np.ndarray) -> dict:
    probs = np.asarray(probs)
    pred = probs.argmax(axis=1)
    return {
        "accuracy": round(accuracy(gold, pred), 4),
        "macro_f1": round(macro_f1(gold, pred, probs.shape[1]), 4),
        "ece": round(expected_calibration_error(gold, probs), 4),
    }
