"""Probabilities → the prediction dict Label Studio stores (result, score, model_version).

`score` is the calibrated probability of what we predict: for single choice P(label), for multiple
choice the probability of exactly the predicted set (labels independent), for a rating P(star)
of the most probable star (with the expected rating beside it), for a taxonomy P(path), for several
controls the product. Each result region also carries its own `score` and the full per-label distribution;
with a remote engine also where the probabilities come from (`probability_source`: "top_logprobs"
or "votes"; "embedding head" where a version's head alone answers, with no LLM pass) and the
tokens the task cost (`usage`); with a version that reasons first, the rationales the model
wrote before its labels were scored (`rationales`, one per sample).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..errors import EngineError
from .label_config import ChoiceControl, TextAreaTarget

MULTI_THRESHOLD = 0.5
TOLERANCE = 1e-6  # how far outside [0, 1] rounding may push a probability before it is an error


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


def chosen_mask(probs: np.ndarray, threshold: float | None = None) -> np.ndarray:
    """Multiple choice: the labels with P ≥ the threshold (0.5 unless the version fitted one on
    ground truth, labeling/threshold.py), or the most probable one when none reaches it (an
    annotator always gets a suggestion). Evaluation uses the same rule."""
    probs = np.asarray(probs, dtype=np.float64)
    mask = probs >= (MULTI_THRESHOLD if threshold is None else float(threshold))
    if not mask.any():
        mask[int(np.argmax(probs))] = True
    return mask


def checked_probabilities(control: ChoiceControl, probs: object, what: str = "probabilities") -> np.ndarray:
    """One probability per label of `control`, each finite and in [0, 1] (rounding noise clipped).

    A NaN would otherwise be picked by argmax and sent to Label Studio as a `NaN` score (not
    JSON), a wrong length would silently pair labels with the wrong numbers: both are an
    EngineError (502) naming the control, never a prediction built on them."""
    n = len(control.labels)
    try:
        p = np.asarray(probs, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise EngineError(f"control {control.name!r}: {what} are not numbers ({exc})") from exc
    if n == 0 or p.shape != (n,):
        raise EngineError(f"control {control.name!r}: {what} of shape {p.shape} for {n} labels")
    if not np.isfinite(p).all():
        raise EngineError(f"control {control.name!r}: {what} are not finite: {p.tolist()}")
    if p.min() < -TOLERANCE or p.max() > 1 + TOLERANCE:
        raise EngineError(f"control {control.name!r}: {what} outside [0, 1]: {p.tolist()}")
    return np.clip(p, 0.0, 1.0)


def decide(control: ChoiceControl, probs: np.ndarray, raw: np.ndarray, *, source: str = "exact",
           usage: dict | None = None, rationales: tuple[str, ...] = (),
           threshold: float | None = None) -> ControlPrediction:
    probs = checked_probabilities(control, probs)
    raw = checked_probabilities(control, raw, "raw probabilities")
    if control.multiple:
        mask = chosen_mask(probs, threshold)
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


def _value(pred: ControlPrediction) -> dict:
    """The region's `type` and `value` as Label Studio stores them for this kind of control."""
    if pred.control.kind == "rating":  # the most probable star; the mean over stars beside it
        stars = np.arange(1, len(pred.probabilities) + 1)
        return {"type": "rating", "value": {"rating": int(pred.chosen[0])},
                "expected_rating": round(float(np.dot(stars, pred.probabilities) / sum(pred.probabilities)), 6)}
    if pred.control.kind == "taxonomy":  # the path with its ancestors, as the editor stores a selection
        path = pred.control.paths[pred.control.labels.index(pred.chosen[0])]
        return {"type": "taxonomy", "value": {"taxonomy": [list(path)]}}
    return {"type": "choices", "value": {"choices": list(pred.chosen)}}


def answer_region(control: ChoiceControl, chosen: tuple[str, ...] | list[str], score: float) -> dict:
    """A region answering `control` with `chosen` (its labels) at `score`, as Label Studio stores
    an annotator's answer: for an answer that is not a scored prediction of this service (say, the
    label a reviewer is asked to consider)."""
    if control.kind == "rating":
        value = {"type": "rating", "value": {"rating": int(chosen[0])}}
    elif control.kind == "taxonomy":
        value = {"type": "taxonomy", "value": {"taxonomy": [list(control.paths[control.labels.index(c)]) for c in chosen]}}
    else:
        value = {"type": "choices", "value": {"choices": list(chosen)}}
    return {"from_name": control.name, "to_name": control.to_name, **value, "score": round(float(score), 6)}


def to_region(pred: ControlPrediction) -> dict:
    c = pred.control
    region = {
        "from_name": c.name,
        "to_name": c.to_name,
        **_value(pred),
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


def rationale_regions(preds: list[ControlPrediction], text_areas: tuple[TextAreaTarget, ...]) -> list[dict]:
    """Each <TextArea> on the same text as a control that reasoned gets the rationale the model
    wrote before its labels (the first sample), so the annotator reads why in the editor; with
    several such controls each line names its control."""
    regions = []
    for area in text_areas:
        reasoned = [p for p in preds if p.rationales and p.control.to_name == area.to_name]
        if reasoned:
            lines = [p.rationales[0] if len(reasoned) == 1 else f"{p.control.name}: {p.rationales[0]}" for p in reasoned]
            regions.append({"from_name": area.name, "to_name": area.to_name, "type": "textarea",
                            "value": {"text": lines}})
    return regions


def to_ls_prediction(preds: list[ControlPrediction], model_version: str, warnings: list[str],
                     text_areas: tuple[TextAreaTarget, ...] = (), span_regions: list[dict] = (),
                     span_scores: list[float] = ()) -> dict:
    """One task's prediction. Its `score` is the product of the choice controls' scores and the
    least sure span's (a task is as doubtful as its weakest part, for sorting by uncertainty); a
    task with only span controls and no span found scores 0, first in line for a human look."""
    parts = [p.score for p in preds] + ([min(span_scores)] if span_scores else [])
    score = float(np.prod(parts)) if parts else 0.0
    item = {
        "result": [to_region(p) for p in preds] + list(span_regions) + rationale_regions(preds, text_areas),
        "score": round(score, 6),
        "model_version": model_version,
    }
    if warnings:
        item["warnings"] = warnings
    return item
