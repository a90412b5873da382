"""Frozen MiniLM + logistic regression vs SetFit-style fine-tuned MiniLM + logistic regression, on
the first n train items for each label budget n, scored on the same test items: is contrastive
fine-tuning worth its CPU time as a refinement candidate?

With `shipped_head_rows` (`head-bench --no-setfit`) it shows instead the frozen head as a
refinement job would ship it alone (plain and label-balanced): temperature cross-fitted on the
ground truth, missing mass for labels not seen yet; next to its raw logistic-regression
probabilities, with ECE and the ECE floor of the same test items. No LLM, so it runs in seconds
even on a set with a hundred labels.

A refinement candidate is fitted 6 times (5 cross-validation folds on 4/5 of the items + 1 final
fit); fine-tuning costs about linearly in the items, so a job would spend about 5 × one fit on n
items (`cv_seconds_estimate`, an extrapolation, not a measurement).
"""
from __future__ import annotations

import time
from typing import Callable

import numpy as np

from ..labeling.head import Embedder
from ..labeling.recipe import ControlRecipe
from ..metrics.single_label import summarize
from ..refinement.candidates.body_tuning import LowerStates, contrastive_pairs, tune_top
from ..refinement.candidates.embedding_head import evaluate_head, head_probs, train_head
from ..refinement.validation.crossval import CandidateResult, fold_ids
from .datasets import Dataset
from .setfit_head import PAIR_ITERATIONS, train_setfit_head

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
    metrics = summarize(gold, head_probs(coef, intercept, test_emb))
    return {"accuracy": metrics["accuracy"], "macro_f1": metrics["macro_f1"], **spent}


def _tuned_top_head(model, texts: list[str], gold: np.ndarray, test_texts: list[str], n_labels: int, top: int,
                    **tuning) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The head a refinement job fits on all items: the top `top` layers fine-tuned (the lower
    layers' states computed once), logistic regression on their embeddings; with the test
    items' embeddings (time spent on the test items' lower states included)."""
    lower = LowerStates(model, texts + test_texts, top)
    train = np.arange(len(texts))
    layers = tune_top(lower, train, gold, **tuning)
    coef, intercept = train_head(lower.encode(layers, train), gold, n_labels)
    return coef, intercept, lower.encode(layers, range(len(texts), len(texts) + len(test_texts)))


def head_bench(model, train: Dataset, test: Dataset, budgets: list[int], *, seed: int = 0,
               iterations: int = PAIR_ITERATIONS, max_pairs: int | None = None, top_layers: int | None = None,
               on_row: Callable[[dict], None] = lambda row: None) -> list[dict]:
    """One row per label budget; `model` is the frozen SentenceTransformer (left unchanged).
    `top_layers`: fine-tune only those, as a job does, instead of the whole body."""
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
        if top_layers:
            coef, intercept, test_emb = _tuned_top_head(model, texts, gold, list(test.texts), n_labels, top_layers,
                                                        seed=seed, iterations=iterations, max_pairs=max_pairs)
        else:
            head = train_setfit_head(model, texts, gold, n_labels, seed=seed, iterations=iterations, max_pairs=max_pairs)
            coef, intercept = head.coef, head.intercept
            test_emb = head.embedder.encode(list(test.texts))
        spent = watch.read()
        setfit_row = _scores(test_gold, coef, intercept, test_emb, spent)
        setfit_row.update(pairs=len(contrastive_pairs(gold, iterations, seed, max_pairs)),
                          cv_seconds_estimate=round(spent["fit_seconds"] * CV_FIT_EQUIVALENTS, 1),
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


def shipped_head_rows(model, train: Dataset, test: Dataset, budgets: list[int], folds: int = 5,
                      on_row: Callable[[dict], None] = lambda row: None) -> list[dict]:
    """One row per label budget and head kind: raw LR probabilities vs the head as shipped."""
    embedder = Embedder(model)
    train_emb, test_emb = embedder.encode(list(train.texts[:max(budgets)])), embedder.encode(list(test.texts))
    if test.multiple:
        return _shipped_one_vs_rest_rows(train, test, train_emb, test_emb, budgets, folds, on_row)
    n_labels, test_gold = len(test.labels), np.asarray(test.gold)
    no_llm_test = np.full((len(test_gold), n_labels), 1.0 / n_labels)
    rows = []
    for n in budgets:
        gold, emb = np.asarray(train.gold[:n]), train_emb[:n]
        no_llm = CandidateResult("none", ControlRecipe(), np.full((len(gold), n_labels), 1.0 / n_labels), gold)
        for balanced in (False, True):
            shipped = evaluate_head(no_llm, emb, fold_ids(len(gold), folds), balanced)[0].recipe.head
            coef, intercept = train_head(emb, gold, n_labels, balanced)
            row = {"labels": len(gold), "head": "head-balanced" if balanced else "head",
                   "labels_seen": int(len(np.unique(gold))), "temperature": round(shipped.temperature, 3),
                   "unseen_mass": round(shipped.unseen_mass, 3),
                   "raw": summarize(test_gold, head_probs(coef, intercept, test_emb)),
                   "shipped": summarize(test_gold, shipped.combine(no_llm_test, test_emb))}
            on_row(row)
            rows.append(row)
    return rows


def _shipped_one_vs_rest_rows(train: Dataset, test: Dataset, train_emb, test_emb, budgets: list[int], folds: int,
                              on_row: Callable[[dict], None]) -> list[dict]:
    """The multi-choice head (one-vs-rest) the same way; metrics over every (item, label) P(yes)."""
    from ..labeling.calibration import sigmoid
    from ..metrics.multi_label import summarize_multilabel
    from ..refinement.candidates.one_vs_rest_head import evaluate_one_vs_rest_head, train_one_vs_rest
    from ..refinement.validation.control_kind import MULTIPLE
    from ..refinement.validation.crossval import CandidateResult

    test_gold, n_labels = test.gold_matrix(), len(test.labels)
    rows = []
    for n in budgets:
        gold, emb = train.gold_matrix()[:n], train_emb[:n]
        no_llm = CandidateResult("none", ControlRecipe(), np.full(gold.shape, 0.5), gold, kind=MULTIPLE)
        fold = fold_ids(len(gold), folds)
        alone = evaluate_one_vs_rest_head(no_llm, emb, fold)[0].with_threshold(fold)
        shipped, threshold = alone.recipe.head, alone.recipe.threshold or 0.5  # 0.5 when the fitted one lost
        coef, intercept = train_one_vs_rest(emb, gold)
        probs = shipped.combine(np.full((len(test_gold), n_labels), 0.5), test_emb)
        row = {"labels": len(gold), "head": "one-vs-rest", "labels_seen": int((gold.sum(0) > 0).sum()),
               "temperature": round(shipped.temperature, 3), "unseen_mass": 0.0, "threshold": threshold,
               "raw": summarize_multilabel(test_gold, sigmoid(test_emb @ coef.T + intercept)),
               "shipped": summarize_multilabel(test_gold, probs),
               "thresholded": summarize_multilabel(test_gold, probs, threshold)}
        on_row(row)
        rows.append(row)
    return rows


SHIPPED_TABLE_HEADER = ("| set | labels | head | labels seen | T | unseen mass | raw macro-F1 | raw ECE (floor) | "
                        "raw log-loss | shipped macro-F1 | shipped ECE (floor) | shipped log-loss |\n"
                        "|---|---|---|---|---|---|---|---|---|---|---|---|")


SHIPPED_MULTI_HEADER = ("| set | labels | labels seen | T | micro-F1 at 0.5 | macro-F1 at 0.5 | labels/item at 0.5 | "
                        "threshold | micro-F1 | macro-F1 | labels/item | yes/no ECE | log-loss |\n"
                        "|---|---|---|---|---|---|---|---|---|---|---|---|---|")


def shipped_multi_markdown_row(name: str, row: dict) -> str:
    """The shipped one-vs-rest head at 0.5 and at the threshold fitted on its out-of-fold probabilities."""
    half, fitted = row["shipped"], row["thresholded"]
    return (f"| {name} | {row['labels']} | {row['labels_seen']} | {row['temperature']:.2f} | {half['micro_f1']:.3f} | "
            f"{half['macro_f1']:.3f} | {half['mean_labels_predicted']:.2f} | {row['threshold']:.2f} | "
            f"{fitted['micro_f1']:.3f} | {fitted['macro_f1']:.3f} | {fitted['mean_labels_predicted']:.2f} | "
            f"{half['ece']:.3f} | {half['log_loss']:.3f} |")


def shipped_markdown_row(name: str, row: dict) -> str:
    """Multi-label rows have the yes/no ECE and no floor (–), and log-loss summed over an item's labels."""
    def cells(m: dict) -> str:
        floor = f"{m['ece_floor']:.3f}" if "ece_floor" in m else "–"
        loss = f"{m['log_loss']:.3f}" if "log_loss" in m else "–"
        return f"{m['macro_f1']:.3f} | {m['ece']:.3f} ({floor}) | {loss}"

    return (f"| {name} | {row['labels']} | {row['head']} | {row['labels_seen']} | {row['temperature']:.2f} | "
            f"{row['unseen_mass']:.2f} | {cells(row['raw'])} | {cells(row['shipped'])} |")


TABLE_HEADER = ("| set | labels | frozen acc | frozen macro-F1 | fine-tuned acc | fine-tuned macro-F1 | gain | "
                "frozen fit s | fine-tuned fit s (CPU s) | ratio | pairs | 6-fit CV s (est.) |\n"
                "|---|---|---|---|---|---|---|---|---|---|---|---|")


def markdown_row(name: str, row: dict) -> str:
    f, s = row["frozen"], row["setfit"]
    return (f"| {name} | {row['labels']} | {f['accuracy']:.3f} | {f['macro_f1']:.3f} | {s['accuracy']:.3f} | "
            f"{s['macro_f1']:.3f} | {row['macro_f1_gain']:+.3f} | {f['fit_seconds']:.1f} | "
            f"{s['fit_seconds']:.1f} ({s['fit_cpu_seconds']:.0f}) | "
            f"{row['fit_seconds_ratio']:.0f}× | {s['pairs']} | {s['cv_seconds_estimate']:.0f} |")
