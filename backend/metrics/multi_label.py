"""Plain metric functions for multi-label classification (a `<Choices choice="multiple">` control).

Gold is an items × labels 0/1 matrix; a system gives P(label applies) per cell. Predicted sets
follow the serving rule (`prediction.chosen_mask`: P ≥ the threshold, 0.5 unless the
version fitted one, at least one label), so what is measured is what Label Studio receives.
Calibration is judged over every (item, label) yes/no probability: P(yes) against how often the
label applies, in equal-width bins. There is no confusion matrix: labels are not exclusive.
"""
from __future__ import annotations

import numpy as np

from ..labeling.prediction import MULTI_THRESHOLD, chosen_mask


def predicted_sets(probs: np.ndarray, threshold: float | np.ndarray | None = None) -> np.ndarray:
    """Boolean items × labels matrix of the labels served for each item; `threshold` one for all
    items, or one per item (cross-fitted), else 0.5."""
    probs = np.atleast_2d(probs)
    if not len(probs):
        return np.zeros((0, 0), bool)
    rows = np.broadcast_to(MULTI_THRESHOLD if threshold is None else np.asarray(threshold, dtype=np.float64),
                           (len(probs),))
    return np.stack([chosen_mask(p, t) for p, t in zip(probs, rows)])


def _counts(gold: np.ndarray, pred: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """True positives, false positives, false negatives per label."""
    gold, pred = np.asarray(gold, dtype=bool), np.asarray(pred, dtype=bool)
    return (gold & pred).sum(0), (~gold & pred).sum(0), (gold & ~pred).sum(0)


def micro_f1_from_counts(tp: np.ndarray, fp: np.ndarray, fn: np.ndarray) -> float:
    """F1 of all (item, label) yes/no decisions pooled."""
    tp, fp, fn = float(np.sum(tp)), float(np.sum(fp)), float(np.sum(fn))
    return 2 * tp / (2 * tp + fp + fn) if tp + fp + fn else 0.0


def micro_f1(gold: np.ndarray, pred: np.ndarray) -> float:
    return micro_f1_from_counts(*_counts(gold, pred))


def macro_f1_from_counts(tp: np.ndarray, fp: np.ndarray, fn: np.ndarray) -> float:
    """Mean F1 over the labels that occur in gold or predictions (as single-label macro-F1 does):
    a label nobody used and nobody predicted says nothing about the system."""
    denom = 2 * tp + fp + fn
    present = denom > 0
    return float((2 * tp[present] / denom[present]).mean()) if present.any() else 0.0


def macro_f1(gold: np.ndarray, pred: np.ndarray) -> float:
    return macro_f1_from_counts(*_counts(gold, pred))


def subset_accuracy(gold: np.ndarray, pred: np.ndarray) -> float:
    """Share of items whose predicted set is exactly the gold set."""
    gold, pred = np.asarray(gold, dtype=bool), np.asarray(pred, dtype=bool)
    return float((gold == pred).all(axis=1).mean()) if len(gold) else 0.0


def per_label(gold: np.ndarray, pred: np.ndarray, labels: list[str]) -> list[dict]:
    tp, fp, fn = _counts(gold, pred)
    rows = []
    for k, label in enumerate(labels):
        p = tp[k] / (tp[k] + fp[k]) if tp[k] + fp[k] else 0.0
        r = tp[k] / (tp[k] + fn[k]) if tp[k] + fn[k] else 0.0
        f = 2 * p * r / (p + r) if p + r else 0.0
        rows.append({"label": label, "precision": round(float(p), 4), "recall": round(float(r), 4),
                     "f1": round(float(f), 4), "support": int(tp[k] + fn[k])})
    return rows


def _bins(probs: np.ndarray, n_bins: int) -> tuple[np.ndarray, np.ndarray]:
    edges = np.linspace(0.0, 1.0, n_bins + 1)
    return edges, np.clip(np.digitize(probs, edges[1:-1], right=True), 0, n_bins - 1)


def yes_no_ece(gold: np.ndarray, probs: np.ndarray, n_bins: int = 10) -> float:
    """ECE over all (item, label) cells: Σ_b |B|/N · |share of yes in B − mean P(yes) in B|."""
    y, p = np.asarray(gold, dtype=np.float64).ravel(), np.asarray(probs, dtype=np.float64).ravel()
    if not y.size:
        return 0.0
    _, bins = _bins(p, n_bins)
    return float(sum((bins == b).mean() * abs(y[bins == b].mean() - p[bins == b].mean())
                     for b in range(n_bins) if (bins == b).any()))


def yes_no_reliability(gold: np.ndarray, probs: np.ndarray, n_bins: int = 10) -> list[dict]:
    """Reliability diagram rows over all (item, label) cells; `accuracy` is the share of yes."""
    y, p = np.asarray(gold, dtype=np.float64).ravel(), np.asarray(probs, dtype=np.float64).ravel()
    edges, bins = _bins(p, n_bins)
    return [{"lo": round(edges[b], 2), "hi": round(edges[b + 1], 2), "count": int((bins == b).sum()),
             "confidence": round(float(p[bins == b].mean()), 4) if (bins == b).any() else None,
             "accuracy": round(float(y[bins == b].mean()), 4) if (bins == b).any() else None}
            for b in range(n_bins)]


def log_loss_per_item(gold: np.ndarray, probs: np.ndarray) -> np.ndarray:
    """Binary log-loss summed over the labels of each item (what the refinement test compares)."""
    y = np.asarray(gold, dtype=np.float64)
    p = np.clip(np.asarray(probs, dtype=np.float64), 1e-12, 1 - 1e-12)
    return -(y * np.log(p) + (1 - y) * np.log(1 - p)).sum(axis=1)


def set_scores(probs: np.ndarray, threshold: float | np.ndarray | None = None) -> np.ndarray:
    """The prediction `score` of each item: P(exactly the served set), labels independent."""
    pred = predicted_sets(probs, threshold)
    return np.where(pred, probs, 1 - probs).prod(axis=1)


def summarize_multilabel(gold: np.ndarray, probs: np.ndarray, threshold: float | np.ndarray | None = None) -> dict:
    gold, probs = np.asarray(gold), np.asarray(probs, dtype=np.float64)
    pred = predicted_sets(probs, threshold)
    return {
        "micro_f1": round(micro_f1(gold, pred), 4),
        "macro_f1": round(macro_f1(gold, pred), 4),
        "subset_accuracy": round(subset_accuracy(gold, pred), 4),
        "ece": round(yes_no_ece(gold, probs), 4),
        "log_loss": round(float(log_loss_per_item(gold, probs).mean()), 4) if len(gold) else 0.0,
        "mean_labels_predicted": round(float(pred.sum(1).mean()), 3) if len(gold) else 0.0,
    }
