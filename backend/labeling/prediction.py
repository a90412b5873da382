"""Probabilities → the prediction dict Label Studio stores (result, score, model_version).

`score` is the calibrated probability of what we predict: for single choice P(label), for multiple
choice the probability of exactly the predicted set (labels independent), for several controls
the product. Each result region also carries its own `score` and the full per-label distribution;
with a remote engine also where the probabilities come from (`probability_source`: "top_logprobs"
or "votes") and the tokens the task cost (`usage`); with a version that reasons first, the
rationales the model wrote before its labels were scored (`rationales`, one per sample).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .label_config import ChoiceControl

MULTI_THRESHOLD = 0.5


@dataclass(frozen=True)
class ControlPrediction:
    control: ChoiceControl
    chosen: tuple[str, ...]
    score: float
    probabilities: tuple[float, ...]
    raw_probabilities: tuple[float, ...]
    probability_source: str = "exact"
    usage: dict | None = None
    rationales: tuple[str, ...] = ()


def chosen_mask(probs: np.ndarray) -> np.ndarray:
    """Multiple choice: the labels with P ≥ 0.5, or the most probable one when none reaches it
    (an annotator always gets a suggestion). Evaluation uses the same rule."""
    probs = np.asarray(probs, dtype=np.float64)
    mask = probs >= MULTI_THRESHOLD
    if not mask.any():
        mask[int(np.argmax(probs))] = True
    return mask


def decide(control: ChoiceControl, probs: np.ndarray, raw: np.ndarray, *, source: str = "exact",
           usage: dict | None = None, rationales: tuple[str, ...] = ()) -> ControlPrediction:
    probs = np.asarray(probs, dtype=np.float64)
    if control.multiple:
        mask = chosen_mask(probs)
        score = float(np.prod(np.where(mask, probs, 1.0 - probs)))
        chosen = tuple(label for label, on in zip(control.labels, mask) if on)
    else:
        best = int(np.argmax(probs))
        score = float(probs[best])
        chosen = (control.labels[best],)
    return ControlPrediction(
        control=control,
        chosen=chosen,
        score=score,
        probabilities=tuple(float(p) for p in probs),
        raw_probabilities=tuple(float(p) for p in raw),
        probability_source=source,
        usage=usage,
        rationales=tuple(rationales),
    )


def to_region(pred: ControlPrediction) -> dict:
    c = pred.control
    region = {
        "from_name": c.name,
        "to_name": c.to_name,
        "type": "choices",
        "value": {"choices": list(pred.chosen)},
        "score": round(pred.score, 6),
        "probabilities": {label: round(p, 6) for label, p in zip(c.labels, pred.probabilities)},
        "raw_probabilities": {label: round(p, 6) for label, p in zip(c.labels, pred.raw_probabilities)},
    }
    if pred.probability_source != "exact":
        region["probability_source"] = pred.probability_source
    if pred.usage is not None:
        region["usage"] = pred.usage
    if pred.rationales:
        region["rationales"] = list(pred.rationales)
    return region


def to_ls_prediction(preds: list[ControlPrediction], model_version: str, warnings: list[str]) -> dict:
    score = float(np.prod([p.score for p in preds])) if preds else 0.0
    item = {
        "result": [to_region(p) for p in preds],
        "score": round(score, 6),
        "model_version": model_version,
    }
    if warnings:
        item["warnings"] = warnings
    return item
