"""Learning for a `<Labels>` control: annotated texts become demonstrations, judged by span F1.

The candidate shows each text its most similar annotated texts (their entities listed as the
model should list them). It is judged against the current span prompt on the same held-out
ground truth, each text leaving itself out of the pool, by exact span micro-F1, and replaces it
only when a paired bootstrap over texts says it is better at the job's significance level. The
span scores of the better prompt are then calibrated (Platt scaling against exact correctness)
when a calibration fitted on half the texts lowers the log-loss of the other half's spans,
significantly; zero-shot span scores are far too sure of themselves.
Evaluation stops at the job's deadline; the decision is taken on the texts both prompts got to.
"""
from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field, replace

import numpy as np

from ..labeling.label_config import SpanControl
from ..labeling.spans import SpanDemo, SpanPrompt, extract_spans
from ..metrics.multi_label import yes_no_ece
from ..metrics.spans import span_system
from ..store.ground_truth import GoldItem
from .validation.significance import paired_bootstrap_mean, paired_bootstrap_span_f1

log = logging.getLogger(__name__)

NEAREST = 3  # demonstrations per text: what a base model's context holds beside a long text
MIN_CALIBRATION_SPANS = 10  # fewer predicted spans cannot fit two numbers that mean anything


def usable_span_gold(control: SpanControl, gold: list[GoldItem], newest: int) -> list[GoldItem]:
    """The `newest` gold items that annotate `control` (entities or none) with labels it still has."""
    usable = [g for g in gold if control.field in g.texts and control.name in g.spans
              and all(label in control.labels for _, _, label in g.spans[control.name])]
    return sorted(usable, key=lambda g: g.updated_at)[-newest:]


def gold_demo(control: SpanControl, item: GoldItem) -> SpanDemo:
    text = item.texts[control.field]
    spans = sorted(item.spans[control.name], key=lambda s: s[0])
    return SpanDemo(text, tuple((text[s:e], label) for s, e, label in spans))


@dataclass
class SpanDecision:
    accepted: bool
    best: str
    prompt: SpanPrompt
    metrics: dict = field(default_factory=dict)
    systems: list[dict] = field(default_factory=list)  # the current and the chosen prompt, for the report

    def summary(self) -> dict:
        return {"accepted": self.accepted, "best": self.best, "best_metrics": self.metrics}


def _counts(pred: list[tuple[int, int, str]], gold: list[tuple[int, int, str]]) -> tuple[int, int, int]:
    return len(set(pred) & set(gold)), len(set(pred)), len(set(gold))


def _logit(p: np.ndarray) -> np.ndarray:
    p = np.clip(p, 1e-6, 1 - 1e-6)
    return np.log(p / (1 - p))


def fit_span_calibration(scores: np.ndarray, correct: np.ndarray) -> tuple[float, float] | None:
    """Platt scaling of span scores against exact correctness: (a, b) of sigmoid(a·logit(s) + b),
    lightly regularised; None when it cannot be fitted or would reverse the order of scores."""
    from sklearn.linear_model import LogisticRegression

    correct = np.asarray(correct, dtype=int)
    if len(correct) < MIN_CALIBRATION_SPANS or correct.min() == correct.max():
        return None
    model = LogisticRegression(C=10.0).fit(_logit(np.asarray(scores))[:, None], correct)
    a, b = float(model.coef_[0, 0]), float(model.intercept_[0])
    return (a, b) if a > 0 else None


def _log_loss(p: np.ndarray, y: np.ndarray) -> np.ndarray:
    p = np.clip(p, 1e-6, 1 - 1e-6)
    return -(y * np.log(p) + (1 - y) * np.log(1 - p))


def _calibration_decision(prompt: SpanPrompt, spans: list[tuple[int, float, bool]], baseline: SpanPrompt,
                          alpha: float) -> tuple[tuple[float, float] | None, dict]:
    """Whether a calibration fitted on these spans (text index, raw score, exactly right) beats the
    baseline's scores on spans it was not fitted on (two folds by text), and the one fitted on all."""
    if not spans:
        return baseline.calibration, {"spans": 0}
    text, raw, right = (np.array(x) for x in zip(*spans))
    right = right.astype(int)
    held_out = np.full(len(raw), np.nan)
    for fold in (0, 1):
        fitted = fit_span_calibration(raw[text % 2 != fold], right[text % 2 != fold])
        if fitted is None:
            return baseline.calibration, {"spans": len(raw)}
        held_out[text % 2 == fold] = [replace(prompt, calibration=fitted).calibrated(s) for s in raw[text % 2 == fold]]
    before = np.array([baseline.calibrated(s) for s in raw])
    diff, p = paired_bootstrap_mean(_log_loss(before, right) - _log_loss(held_out, right))
    info = {"spans": len(raw), "log_loss_gain": diff, "p": p, "held_out_ece": yes_no_ece(right, held_out),
            "ece_before": yes_no_ece(right, before)}
    return (fit_span_calibration(raw, right), info) if diff > 0 and p < alpha else (baseline.calibration, info)


def refine_spans(service, control: SpanControl, items: list[GoldItem], current: SpanPrompt, *,
                 alpha: float, deadline: float) -> SpanDecision:
    """Judge the nearest-demos candidate built from `items` against `current` on `items`, then
    the calibration of the better one's span scores."""
    raw_current = replace(current, calibration=None)
    pool = tuple(gold_demo(control, g) for g in items)
    candidate = replace(raw_current, name=f"{NEAREST}-nearest", pool=pool, nearest=NEAREST)
    texts = [g.texts[control.field] for g in items]
    demos = {p: service.span_demos(p, texts, leave_out_self=True) for p in (raw_current, candidate)}
    rows = {raw_current: [], candidate: []}
    preds = {raw_current: [], candidate: []}
    golds = []
    scored = {raw_current: [], candidate: []}  # (text index, raw score, exactly right) per span
    for i, g in enumerate(items):
        if time.monotonic() > deadline:
            log.info("span control %r: deadline after %d of %d texts", control.name, i, len(items))
            break
        gold = [tuple(s) for s in g.spans[control.name]]
        golds.append(gold)
        for prompt in (raw_current, candidate):
            spans = extract_spans(service.engine, control, prompt, texts[i], demos[prompt][i])
            pred = [(s.start, s.end, s.label) for s in spans]
            rows[prompt].append(_counts(pred, gold))
            preds[prompt].append(pred)
            scored[prompt] += [(i, s.score, key in set(gold)) for s, key in zip(spans, pred)]
    judged = len(rows[candidate])
    if judged == 0:
        return SpanDecision(False, current.name, current, {"judged": 0})
    cand, cur = np.array(rows[candidate]), np.array(rows[raw_current])
    diff, p = paired_bootstrap_span_f1(cand, cur)
    f1 = lambda c: float(2 * c[0] / max(c[1] + c[2], 1))  # noqa: E731
    metrics = {"judged": judged, "exact_f1": f1(cand.sum(0)), "current_exact_f1": f1(cur.sum(0)), "p": p}
    better = diff > 0 and p < alpha
    best = candidate if better else raw_current
    baseline = SpanPrompt() if better else current  # a calibration fitted to another prompt's scores does not carry over
    calibration, metrics["calibration"] = _calibration_decision(best, scored[best], baseline, alpha)
    chosen = replace(best, calibration=calibration,
                     name=best.name + ("+calibrated" if calibration and calibration != current.calibration else ""))
    accepted = better or calibration != current.calibration
    log.info("span control %r: %s exact F1 %.3f vs current %.3f (p=%.3f) on %d texts; calibration %s", control.name,
             candidate.name, metrics["exact_f1"], metrics["current_exact_f1"], p, judged, calibration)
    systems = [span_system(f"{control.name}: current ({current.name}), each text left out", preds[raw_current], golds,
                           control.labels),
               span_system(f"{control.name}: {candidate.name}, each text left out", preds[candidate], golds, control.labels)]
    return SpanDecision(accepted, chosen.name if accepted else current.name, chosen if accepted else current, metrics,
                        systems)
