"""Entity spans on a labelled span set (JSONL rows {"text", "spans": [{"start","end","label","text"}]}):
exact, partial and unlabelled F1, how honest the span scores are, and items per second.

"zero-shot" extracts with the instructions alone. "nearest demos" shows each test text the
`nearest` most similar of the first `labels` training texts (MiniLM cosine), as a version that has
learnt from that many annotations does.
"""
from __future__ import annotations

import json
import random
import time
from pathlib import Path
from typing import Callable

import numpy as np

from ..errors import DatasetError
from ..labeling.demos import nearest_indices
from ..labeling.label_config import SpanControl
from ..labeling.spans import SpanDemo, SpanPrompt, extract_spans
from ..metrics.multi_label import yes_no_ece
from ..metrics.spans import correct_flags, span_scores


def load_span_rows(path: str | Path, *, limit: int | None = None, seed: int | None = None) -> list[dict]:
    """Rows with a text and a list of spans, shuffled with `seed` (None: file order), first `limit`."""
    rows = [json.loads(line) for line in Path(path).read_text(encoding="utf-8").splitlines() if line.strip()]
    rows = [r for r in rows if isinstance(r.get("text"), str) and isinstance(r.get("spans"), list)]
    if not rows:
        raise DatasetError(f'{path}: no row has a "text" string and a "spans" list', field="dataset")
    if seed is not None:
        random.Random(seed).shuffle(rows)
    return rows[:limit] if limit else rows


def span_labels(path: str | Path, rows: list[dict]) -> tuple[str, ...]:
    """labels.json beside the file (its order), else the labels the rows use."""
    beside = Path(path).with_name("labels.json")
    if beside.is_file():
        return tuple(json.loads(beside.read_text(encoding="utf-8")))
    return tuple(sorted({s["label"] for r in rows for s in r["spans"]}))


def demo_of(row: dict) -> SpanDemo:
    spans = sorted(row["spans"], key=lambda s: s["start"])
    return SpanDemo(row["text"], tuple((row["text"][s["start"]:s["end"]], s["label"]) for s in spans))


def _score_calibration(scores: list[float], correct: list[bool], n_bins: int = 10) -> dict:
    """ECE of span scores against exact correctness, and mean score of right and wrong spans."""
    if not scores:
        return {"ece": None, "auroc": None, "mean_score_correct": None, "mean_score_wrong": None}
    s, c = np.asarray(scores), np.asarray(correct, dtype=float)
    ece = yes_no_ece(c, s, n_bins)
    auroc = None
    if 0 < c.sum() < len(c):  # P(a right span outscores a wrong one), ties half
        right, wrong = s[c == 1], s[c == 0]
        auroc = float(((right[:, None] > wrong[None, :]).mean() + 0.5 * (right[:, None] == wrong[None, :]).mean()))
    return {"ece": float(ece), "auroc": auroc, "mean_score_correct": float(s[c == 1].mean()) if c.any() else None,
            "mean_score_wrong": float(s[c == 0].mean()) if (c == 0).any() else None}


def run_span_bench(engine, embedder, train: list[dict], test: list[dict], labels: tuple[str, ...], *,
                   nearest: int = 0, progress: Callable[[int], None] | None = None) -> dict:
    control = SpanControl(name="label", to_name="text", field="text", labels=labels)
    pool = [demo_of(r) for r in train]
    demos = [() for _ in test]
    if nearest and pool:
        idx = nearest_indices(embedder.encode([d.text for d in pool]), embedder.encode([r["text"] for r in test]), nearest)
        demos = [tuple(pool[j] for j in row) for row in idx]
    preds, golds, scores, correct = [], [], [], []
    start = time.perf_counter()
    for row, task_demos in zip(test, demos):
        spans = extract_spans(engine, control, SpanPrompt(), row["text"], task_demos)
        pred = [(s.start, s.end, s.label) for s in spans]
        gold = [(s["start"], s["end"], s["label"]) for s in row["spans"]]
        preds.append(pred)
        golds.append(gold)
        scores += [s.score for s in spans]
        correct += correct_flags(pred, gold)
        if progress:
            progress(1)
    elapsed = time.perf_counter() - start
    return {"items": len(test), "labels": len(train), "nearest": nearest, **span_scores(preds, golds),
            **_score_calibration(scores, correct), "items_per_second": len(test) / elapsed if elapsed else None,
            "span_scores": scores, "span_correct": correct}


def with_calibration(report: dict, fitted: dict) -> dict:
    """The report's span scores calibrated by a fit on other texts (`fitted`: a report on them)."""
    from ..labeling.spans import SpanPrompt
    from ..refinement.span_learning import fit_span_calibration

    calibration = fit_span_calibration(np.array(fitted["span_scores"]), np.array(fitted["span_correct"]))
    prompt = SpanPrompt(calibration=calibration)
    scores = [prompt.calibrated(x) for x in report["span_scores"]]
    return {**report, **_score_calibration(scores, report["span_correct"]), "calibration": calibration,
            "span_scores": scores}


def markdown_row(name: str, report: dict) -> str:
    f = lambda x: "–" if x is None else f"{x:.2f}"  # noqa: E731
    return (f"| {name} | {f(report['exact']['f1'])} | {f(report['partial']['f1'])} | {f(report['unlabelled']['f1'])} "
            f"| {f(report['exact']['precision'])} | {f(report['exact']['recall'])} | {f(report['ece'])} | {f(report['auroc'])} "
            f"| {f(report['items_per_second'])} |")
