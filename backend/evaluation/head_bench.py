"""Frozen MiniLM + logistic regression vs SetFit-style fine-tuned MiniLM + logistic regression, on
the first n train items for each label budget n, scored on the same test items: is contrastive
fine-tuning worth its CPU time as a refinement candidate?

A refinement candidate is fitted 6 times (5 cross-validation folds on 4/5 of the items + 1 final
fit); fine-tuning costs about linearly in the items, so a job would spend about 5 × one fit on n
items (`cv_seconds_estimate`, an extrapolation, not a measurement).
"""
from __future__ import annotations

import time
from typing import Callable

import numpy as np

from ..labeling.head import Embedder
from ..refinement.head import _head_probs, train_head
from ..refinement.setfit_head import PAIR_ITERATIONS, train_setfit_head
from .datasets import Dataset
from .metrics import summarize

CV_FIT_EQUIVALENTS = 5 * 0.8 + 1  # 5 folds on 4/5 of the items + 1 final fit, in fits on all items


class Stopwatch:
    """Wall seconds (what a job waits) and this process's CPU seconds (closer to what the fit costs
    on a quiet machine with the same threads: the CPU here is shared, so wall seconds are upper bounds)."""

    def __init__(self):
        self.wall, self.cpu = time.perf_counter(), time.process_time()

    def read(self) -> dict:
        return {"fit_seconds": round(time.perf_counter() - self.wall, 2),
                "fit_cpu_seconds": round(time.process_time() - self.cpu, 2)}


def _scores(gold: np.ndarray, coef: np.ndarray, intercept: np.ndarray, test_emb: np.ndarray, spent: dict) -> dict:
    metrics = summarize(gold, _head_probs(coef, intercept, test_emb))
    return {"accuracy": metrics["accuracy"], "macro_f1": metrics["macro_f1"], **spent}


def head_bench(model, train: Dataset, test: Dataset, budgets: list[int], *, seed: int = 0,
               iterations: int = PAIR_ITERATIONS, max_pairs: int | None = None,
               on_row: Callable[[dict], None] = lambda row: None) -> list[dict]:
    """One row per label budget; `model` is the frozen SentenceTransformer (left unchanged)."""
    n_labels, test_gold = len(test.labels), np.asarray(test.gold)
    frozen = Embedder(model)
    frozen_test = frozen.encode(list(test.texts))
    rows = []
    for n in budgets:
        texts, gold = list(train.texts[:n]), np.asarray(train.gold[:n])
        watch = Stopwatch()
        coef, intercept = train_head(frozen.encode(texts), gold, n_labels)
        frozen_row = _scores(test_gold, coef, intercept, frozen_test, watch.read())
        watch = Stopwatch()
        head = train_setfit_head(model, texts, gold, n_labels, seed=seed, iterations=iterations, max_pairs=max_pairs)
        spent = watch.read()
        setfit_row = _scores(test_gold, head.coef, head.intercept, head.embedder.encode(list(test.texts)), spent)
        setfit_row.update(pairs=head.pairs, cv_seconds_estimate=round(spent["fit_seconds"] * CV_FIT_EQUIVALENTS, 1),
                          cv_cpu_seconds_estimate=round(spent["fit_cpu_seconds"] * CV_FIT_EQUIVALENTS, 1))
        row = {
            "labels": len(texts),
            "label_counts": {test.labels[k]: int(c) for k, c in enumerate(np.bincount(gold, minlength=n_labels))},
            "frozen": frozen_row,
            "setfit": setfit_row,
            "macro_f1_gain": round(setfit_row["macro_f1"] - frozen_row["macro_f1"], 4),
            "fit_seconds_ratio": round(spent["fit_seconds"] / max(frozen_row["fit_seconds"], 1e-3), 1),
        }
        on_row(row)
        rows.append(row)
    return rows


TABLE_HEADER = ("| set | labels | frozen acc | frozen macro-F1 | fine-tuned acc | fine-tuned macro-F1 | gain | "
                "frozen fit s | fine-tuned fit s (CPU s) | ratio | pairs | 6-fit CV s (est.) |\n"
                "|---|---|---|---|---|---|---|---|---|---|---|---|")


def markdown_row(name: str, row: dict) -> str:
    f, s = row["frozen"], row["setfit"]
    return (f"| {name} | {row['labels']} | {f['accuracy']:.3f} | {f['macro_f1']:.3f} | {s['accuracy']:.3f} | "
            f"{s['macro_f1']:.3f} | {row['macro_f1_gain']:+.3f} | {f['fit_seconds']:.1f} | "
            f"{s['fit_seconds']:.1f} ({s['fit_cpu_seconds']:.0f}) | "
            f"{row['fit_seconds_ratio']:.0f}× | {s['pairs']} | {s['cv_seconds_estimate']:.0f} |")
