"""Entity spans on a labelled span set (JSONL rows {"text", "spans": [{"start","end","label","text"}]}):
exact, partial and unlabelled F1, how honest the span scores are, and items per second.

"zero-shot" extracts with the instructions alone. "nearest demos" shows each test text the
`nearest` most similar of the first `labels` training texts (MiniLM cosine), as a version that has
learnt from that many annotations does. "typing head" keeps the zero-shot mentions and re-types
them with a head trained on the train texts' annotated mentions (labeling.span_typing); its
settings are compared by cross-fitting on the train texts, never on the test texts. "rewrite"
runs a job's instruction search on a minibatch of the train texts and extracts the test texts
with its best proposal.
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
from ..labeling.span_typing import INPUTS
from ..labeling.spans import Placement, SpanDemo, SpanPrompt, place_mentions, placed_spans
from ..metrics.multi_label import yes_no_ece
from ..metrics.spans import correct_flags, span_scores
from ..refinement.span_learning import (TypingSetting, cross_fitted_typing, train_typing_head, typing_data,
                                        typing_folds)


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


def span_control(labels: tuple[str, ...]) -> SpanControl:
    return SpanControl(name="label", to_name="text", field="text", labels=labels)


def gold_of(row: dict) -> list[tuple[int, int, str]]:
    return [(s["start"], s["end"], s["label"]) for s in row["spans"]]


def place_rows(engine, embedder, train: list[dict], test: list[dict], labels: tuple[str, ...], *, nearest: int = 0,
               progress: Callable[[int], None] | None = None) -> tuple[list[Placement], float]:
    """The LLM's pass over each test text (with its `nearest` train texts as demos), and the
    seconds it took: what every way of typing the mentions then shares."""
    control = span_control(labels)
    pool = [demo_of(r) for r in train]
    demos = [() for _ in test]
    if nearest and pool:
        idx = nearest_indices(embedder.encode([d.text for d in pool]), embedder.encode([r["text"] for r in test]), nearest)
        demos = [tuple(pool[j] for j in row) for row in idx]
    placements = []
    start = time.perf_counter()
    for row, task_demos in zip(test, demos):
        placements.append(place_mentions(engine, control, SpanPrompt(), row["text"], task_demos))
        if progress:
            progress(1)
    return placements, time.perf_counter() - start


def spans_report(test: list[dict], spans_per_text: list[list], seconds: float, **extra) -> dict:
    preds, golds, scores, correct = [], [], [], []
    for row, spans in zip(test, spans_per_text):
        pred = [(s.start, s.end, s.label) for s in spans]
        gold = gold_of(row)
        preds.append(pred)
        golds.append(gold)
        scores += [s.score for s in spans]
        correct += correct_flags(pred, gold)
    return {"items": len(test), **extra, **span_scores(preds, golds), **_score_calibration(scores, correct),
            "items_per_second": len(test) / seconds if seconds else None, "span_scores": scores,
            "span_correct": correct}


def run_span_bench(engine, embedder, train: list[dict], test: list[dict], labels: tuple[str, ...], *,
                   nearest: int = 0, progress: Callable[[int], None] | None = None,
                   placed: tuple[list[Placement], float] | None = None) -> dict:
    """`placed`: the LLM's pass over `test` done already (`place_rows`), not run again."""
    control = span_control(labels)
    placements, seconds = placed or place_rows(engine, embedder, train, test, labels, nearest=nearest,
                                               progress=progress)
    spans = [placed_spans(control, SpanPrompt(), row["text"], p) for row, p in zip(test, placements)]
    return spans_report(test, spans, seconds, labels=len(train), nearest=nearest)


class CachedEmbedder:
    """An embedder that encodes each string once: the typing settings share their inputs."""

    def __init__(self, embedder):
        self.embedder, self.cache = embedder, {}

    def encode(self, texts: list[str]) -> np.ndarray:
        missing = list(dict.fromkeys(t for t in texts if t not in self.cache))
        if missing:
            self.cache.update(zip(missing, self.embedder.encode(missing)))
        return np.array([self.cache[t] for t in texts])


def typing_settings() -> list[TypingSetting]:
    """What is compared: each input, with and without a "none" class, the head alone and pooled."""
    pools = [("log", 0.0), ("log", 0.25), ("log", 0.5), ("mix", 0.5)]
    return [TypingSetting(inputs, none, w, pooling)
            for inputs in INPUTS for none in (False, True) for pooling, w in pools]


def typing_head_reports(embedder, train: list[dict], train_placed: tuple[list[Placement], float], test: list[dict],
                        test_placed: tuple[list[Placement], float], labels: tuple[str, ...],
                        settings: list[TypingSetting]) -> list[tuple[TypingSetting, dict, dict]]:
    """Per setting: its cross-fitted report on the train texts (the folds of a refinement job,
    which is where settings are chosen) and its report on the test texts with a head trained on
    all train texts (their placements give the "none" class its examples)."""
    control, cached = span_control(labels), CachedEmbedder(embedder)
    train_texts, train_golds = [r["text"] for r in train], [gold_of(r) for r in train]
    out = []
    for setting in settings:
        data = typing_data(cached, control, train_texts, train_golds, train_placed[0], setting.inputs)
        cv_spans = cross_fitted_typing(control, SpanPrompt(), train_texts, train_placed[0], data, setting,
                                       typing_folds(len(train)))
        cv = spans_report(train, cv_spans or [[] for _ in train], train_placed[1])
        head = train_typing_head(data, list(range(len(train))), len(labels), setting)
        start = time.perf_counter()  # the test texts typed as /predict types them: embedded per text
        prompt = SpanPrompt(typing=head)
        spans = [placed_spans(control, prompt, r["text"], p, embedder) for r, p in zip(test, test_placed[0])]
        seconds = test_placed[1] + time.perf_counter() - start
        out.append((setting, cv, spans_report(test, spans, seconds, labels=len(train), nearest=0)))
    return out


def rewrite_report(engine, embedder, rewrite, train: list[dict], train_placed: tuple[list[Placement], float],
                   test: list[dict], labels: tuple[str, ...]) -> dict:
    """The instruction search a job runs (refinement/span_rewrite.py), on a minibatch of the train
    texts with their zero-shot spans, and its best proposal's report on the test texts (whether or
    not it beat the zero-shot prompt on the minibatch, which a job requires)."""
    from types import SimpleNamespace

    from ..refinement.span_rewrite import SpanInstructionSearch, minibatch_mask

    control = span_control(labels)
    batch = np.flatnonzero(minibatch_mask(len(train)))
    current = [[(s.start, s.end, s.label) for s in placed_spans(control, SpanPrompt(), train[i]["text"],
                                                                 train_placed[0][i])] for i in batch]
    search = SpanInstructionSearch(rewrite, SimpleNamespace(engine=engine, embedder=embedder), control, SpanPrompt(),
                                   [train[i]["text"] for i in batch], [gold_of(train[i]) for i in batch], current,
                                   [() for _ in batch], train_placed[1] / max(len(train), 1), 0, float("inf"))
    start = time.perf_counter()
    search.run()
    searched = time.perf_counter() - start
    info = {**search.log.summary(), "search_seconds": searched}
    if search.log.best_instructions is None:
        return {"rewrite": info}
    prompt = search.candidate(search.log.best_instructions)
    start = time.perf_counter()
    spans = [placed_spans(control, prompt, r["text"], place_mentions(engine, control, prompt, r["text"]))
             for r in test]
    return {**spans_report(test, spans, time.perf_counter() - start, labels=len(train), nearest=0), "rewrite": info}


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
