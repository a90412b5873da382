"""The usual example backend, as a baseline: ask for free text, then match it to a label with
difflib. Answers that match no label count as wrong (and are reported)."""
from __future__ import annotations

import difflib

import numpy as np

from ..labeling.prompt import clean_text
from ..metrics.single_label import accuracy, macro_f1
from .datasets import Dataset


def naive_prompt(labels: tuple[str, ...], text: str) -> str:
    return (f"Classify the text into one of these labels: {', '.join(labels)}.\n\n"
            f"Text: {clean_text(text)}\nLabel:")


def parse_answer(answer: str, labels: tuple[str, ...]) -> int | None:
    lowered = [label.lower() for label in labels]
    match = difflib.get_close_matches(answer.strip().lower(), lowered, n=1, cutoff=0.6)
    return lowered.index(match[0]) if match else None


def naive_predictions(engine, data: Dataset) -> np.ndarray:
    """Label index per text, −1 where the free-text answer matched no label."""
    parsed = [parse_answer(engine.generate(naive_prompt(data.labels, t)), data.labels) for t in data.texts]
    return np.array([-1 if p is None else p for p in parsed])


def evaluate_naive(engine, data: Dataset, pred: np.ndarray | None = None) -> dict:
    pred = naive_predictions(engine, data) if pred is None else pred
    gold = np.array(data.gold)
    return {
        "accuracy": round(accuracy(gold, pred), 4),
        "macro_f1": round(macro_f1(gold, pred, len(data.labels)), 4),
        "unparseable": round(float(np.mean(pred < 0)), 4),
    }
