"""Span-level scores: micro precision, recall and F1 over (start, end, label) spans.

Exact match counts a predicted span only where a gold span has the same offsets and label (the
CoNLL rule). Partial match also counts one that overlaps a gold span of the same label, each
gold span matched at most once, so a cut-short or too-long mention still earns credit once.
Unlabelled exact match ignores the label: it separates finding mentions from typing them.
"""
from __future__ import annotations

from typing import Iterable, Sequence

SpanKey = tuple[int, int, str]  # start, end, label


def _prf(tp: int, n_pred: int, n_gold: int) -> dict:
    p = tp / n_pred if n_pred else 0.0
    r = tp / n_gold if n_gold else 0.0
    return {"precision": p, "recall": r, "f1": 2 * p * r / (p + r) if p + r else 0.0}


def _overlap_matches(pred: Sequence[SpanKey], gold: Sequence[SpanKey]) -> int:
    """Predicted spans that overlap a still unmatched gold span of their label (exact ones first)."""
    free = list(gold)
    tp = 0
    for span in sorted(pred, key=lambda s: s not in gold):
        for g in free:
            if g[2] == span[2] and span[0] < g[1] and g[0] < span[1]:
                free.remove(g)
                tp += 1
                break
    return tp


def span_scores(pred: Iterable[Sequence[SpanKey]], gold: Iterable[Sequence[SpanKey]]) -> dict:
    """Exact, partial and unlabelled micro P/R/F1 over paired items (one span list per item)."""
    exact = partial = unlabelled = n_pred = n_gold = 0
    for p, g in zip(pred, gold, strict=True):
        p, g = list(dict.fromkeys(p)), list(dict.fromkeys(g))
        n_pred, n_gold = n_pred + len(p), n_gold + len(g)
        exact += len(set(p) & set(g))
        partial += _overlap_matches(p, g)
        unlabelled += len({s[:2] for s in p} & {s[:2] for s in g})
    return {"exact": _prf(exact, n_pred, n_gold), "partial": _prf(partial, n_pred, n_gold),
            "unlabelled": _prf(unlabelled, n_pred, n_gold), "predicted": n_pred, "gold": n_gold}


def exact_f1(pred: Sequence[Sequence[SpanKey]], gold: Sequence[Sequence[SpanKey]]) -> float:
    """Exact micro-F1 alone, as 2·TP / (predicted + gold): what a choice among prompts or settings
    ranks by (span_scores gives the same figure with precision and recall)."""
    tp = sum(len(set(p) & set(g)) for p, g in zip(pred, gold, strict=True))
    return 2 * tp / max(sum(len(set(p)) for p in pred) + sum(len(set(g)) for g in gold), 1)


def correct_flags(pred: Sequence[SpanKey], gold: Sequence[SpanKey]) -> list[bool]:
    """Per predicted span of one item, whether it is exactly right (for the calibration of scores)."""
    gold = set(gold)
    return [span in gold for span in pred]


def span_system(name: str, pred: Sequence[Sequence[SpanKey]], gold: Sequence[Sequence[SpanKey]],
                labels: Sequence[str]) -> dict:
    """A report's entry for one span extractor: summary figures and exact P/R/F1 per label."""
    scores = span_scores(pred, gold)
    rows = []
    for label in labels:
        p = [[s for s in item if s[2] == label] for item in pred]
        g = [[s for s in item if s[2] == label] for item in gold]
        exact = span_scores(p, g)["exact"]
        rows.append({"label": label, **{k: round(v, 4) for k, v in exact.items()}, "support": sum(map(len, g))})
    return {"name": name, "spans": True, "n": len(gold), "exact_f1": round(scores["exact"]["f1"], 4),
            "partial_f1": round(scores["partial"]["f1"], 4), "unlabelled_f1": round(scores["unlabelled"]["f1"], 4),
            "predicted": scores["predicted"], "gold": scores["gold"], "per_label": rows}
