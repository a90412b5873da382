"""Learning for a `<Labels>` control: annotated texts become demonstrations, judged by span F1.

The candidate shows each text its most similar annotated texts (their entities listed as the
model should list them). It is judged against the current span prompt on the same held-out
ground truth, each text leaving itself out of the pool, by exact span micro-F1, and replaces it
only when a paired bootstrap over texts says it is better at the job's significance level. The
span scores of the better prompt are then calibrated (Platt scaling against exact correctness)
when a calibration fitted on half the texts lowers the log-loss of the other half's spans,
significantly; zero-shot span scores are far too sure of themselves.
With enough annotated texts a second candidate keeps the current prompt's mentions but re-types
them with a typing head (labeling.span_typing) trained on the annotated mentions, cross-fitted
(each text typed by a head that did not see it) and judged by the same test; the LLM's pass over
a text is run once and re-typed, not run again. When the job has a teacher, a third candidate
rewrites the instruction (span_rewrite); the texts its search chose on then judge no candidate.
The candidates are one test family (Holm), and the better of those that pass is kept.
Evaluation stops at the job's deadline; the decision is taken on the texts both prompts got to.
"""
from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field, replace

import numpy as np

from ..labeling.label_config import SpanControl
from ..labeling.prompt import clean_text
from ..labeling.span_typing import TypingHead, pair_features
from ..labeling.spans import Placement, SpanDemo, SpanPrompt, extract_spans, occurrences, place_mentions, placed_spans
from ..metrics.multi_label import yes_no_ece
from ..metrics.spans import exact_f1, span_system
from ..store.ground_truth import GoldItem
from .candidates.embedding_head import train_head
from .candidates.instruction_rewrite import Rewrite
from .span_rewrite import rewrite_candidate
from .validation.significance import holm_rejections, paired_bootstrap_mean, paired_bootstrap_span_f1

log = logging.getLogger(__name__)

NEAREST = 3  # demonstrations per text: what a base model's context holds beside a long text
MIN_CALIBRATION_SPANS = 10  # fewer predicted spans cannot fit two numbers that mean anything
MIN_TYPING_TEXTS = 20  # annotated texts before a typing head is tried: fewer give a few mentions per label
TYPING_FOLDS = 5  # cross-fitting of the typing head: each text typed by a head trained on the other folds


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


def _typing_candidate(service, control: SpanControl, prompt: SpanPrompt, texts: list[str], golds: list,
                      placements: list[Placement]) -> tuple[SpanPrompt, list[list]] | None:
    """`prompt` with a typing head trained on all judged texts, and its cross-fitted spans of each
    text (its placement re-typed by a head that did not see it); None with too few texts or labels.
    The head's setting is chosen among TYPING_SETTINGS like the embedding head's C: each fold's
    spans come from the setting best on the other folds, the one best on all texts ships."""
    if len(texts) < MIN_TYPING_TEXTS or labels_present(golds) < 2:
        return None
    folds = typing_folds(len(texts))
    data = {inputs: typing_data(service.embedder, control, texts, golds, placements, inputs)
            for inputs in dict.fromkeys(s.inputs for s in TYPING_SETTINGS)}
    fitted = {s: cross_fitted_typing(control, prompt, texts, placements, data[s.inputs], s, folds)
              for s in TYPING_SETTINGS}
    fitted = {s: spans for s, spans in fitted.items() if spans is not None}
    if not fitted:
        return None
    spans, setting = cross_chosen_typing(fitted, golds, folds)
    head = train_typing_head(data[setting.inputs], list(range(len(texts))), len(control.labels), setting)
    if head is None:
        return None
    return replace(prompt, name="typing-head", typing=head), spans


def cross_chosen_typing(fitted: dict, golds: list, folds: np.ndarray) -> tuple[list[list], "TypingSetting"]:
    """Per text, the cross-fitted spans of the setting with the best exact F1 on the other folds'
    texts; and the setting best on all texts (ties: the first in `fitted`)."""
    keys = {s: [[(x.start, x.end, x.label) for x in spans] for spans in per_text] for s, per_text in fitted.items()}

    def f1(setting, texts: np.ndarray) -> float:
        return exact_f1([keys[setting][i] for i in texts], [golds[i] for i in texts])

    out: list[list] = [[] for _ in golds]
    for f in np.unique(folds):
        best = max(keys, key=lambda s: f1(s, np.flatnonzero(folds != f)))
        for i in np.flatnonzero(folds == f):
            out[i] = fitted[best][i]
    return out, max(keys, key=lambda s: f1(s, np.arange(len(golds))))


def refine_spans(service, control: SpanControl, items: list[GoldItem], current: SpanPrompt, *,
                 alpha: float, deadline: float, rewrite: Rewrite | None = None) -> SpanDecision:
    """Judge the candidates built from `items` (nearest demos, a typing head, a rewritten
    instruction) against `current` on `items`, then the calibration of the better one's span scores."""
    raw_current = replace(current, calibration=None)
    pool = tuple(gold_demo(control, g) for g in items)
    candidate = replace(raw_current, name=f"{NEAREST}-nearest", pool=pool, nearest=NEAREST)
    texts = [g.texts[control.field] for g in items]
    demos = {p: service.span_demos(p, texts, leave_out_self=True) for p in (raw_current, candidate)}
    golds, placements = [], []
    spans_of = {raw_current: [], candidate: []}
    t0 = time.monotonic()
    for i, g in enumerate(items):
        if time.monotonic() > deadline:
            log.info("span control %r: deadline after %d of %d texts", control.name, i, len(items))
            break
        golds.append([tuple(s) for s in g.spans[control.name]])
        placements.append(place_mentions(service.engine, control, raw_current, texts[i], demos[raw_current][i]))
        spans_of[raw_current].append(placed_spans(control, raw_current, texts[i], placements[i], service.embedder))
        spans_of[candidate].append(extract_spans(service.engine, control, candidate, texts[i], demos[candidate][i],
                                                 service.embedder))
    judged = len(golds)
    seconds_per_text = (time.monotonic() - t0) / (2 * max(judged, 1))  # two prompts ran on each text
    if judged == 0:
        return SpanDecision(False, current.name, current, {"judged": 0})
    typed = _typing_candidate(service, control, raw_current, texts[:judged], golds, placements)
    if typed is not None:
        spans_of[typed[0]] = typed[1]
    current_keys = [[(s.start, s.end, s.label) for s in spans] for spans in spans_of[raw_current]]
    rewritten, rewrite_info = rewrite_candidate(rewrite, service, control, raw_current, texts[:judged], golds,
                                                current_keys, demos[raw_current][:judged], deadline=deadline,
                                                seconds_per_text=seconds_per_text)
    judge = np.ones(judged, dtype=bool)
    if rewritten is not None:  # the texts its search looked at judge no candidate
        spans_of[rewritten[0]], judge = rewritten[1], ~rewritten[2]
        spans_of = {p: [spans for spans, kept in zip(per_text, judge) if kept] for p, per_text in spans_of.items()}
        golds = [gold for gold, kept in zip(golds, judge) if kept]
    rows, preds, scored = {}, {}, {}
    for prompt, per_text in spans_of.items():
        preds[prompt] = [[(s.start, s.end, s.label) for s in spans] for spans in per_text]
        rows[prompt] = np.array([_counts(pred, gold) for pred, gold in zip(preds[prompt], golds)])
        # (text index, raw score, exactly right) per span
        scored[prompt] = [(i, s.score, key in set(gold)) for i, (spans, pred, gold) in
                          enumerate(zip(per_text, preds[prompt], golds)) for s, key in zip(spans, pred)]
    f1 = lambda c: float(2 * c[0] / max(c[1] + c[2], 1))  # noqa: E731
    cur = rows[raw_current]
    tests = {prompt: paired_bootstrap_span_f1(rows[prompt], cur) for prompt in spans_of if prompt is not raw_current}
    passed = holm_rejections([p if diff > 0 else 1.0 for diff, p in tests.values()], alpha)
    judgements = {prompt: (ok, f1(rows[prompt].sum(0)), p) for (prompt, (_, p)), ok in zip(tests.items(), passed)}
    # the better of the candidates that beat the current prompt (Holm over them), else the best-scoring one for the record
    candidate = max(judgements, key=lambda c: (judgements[c][0], judgements[c][1]))
    better, _, p = judgements[candidate]
    metrics = {"judged": int(judge.sum()), "exact_f1": judgements[candidate][1], "current_exact_f1": f1(cur.sum(0)), "p": p,
               "candidates": {c.name: {"exact_f1": f, "p": q} for c, (_, f, q) in judgements.items()},
               **({"rewrite": rewrite_info} if rewrite_info else {})}
    best = candidate if better else raw_current
    baseline = SpanPrompt() if better else current  # a calibration fitted to another prompt's scores does not carry over
    calibration, metrics["calibration"] = _calibration_decision(best, scored[best], baseline, alpha)
    chosen = replace(best, calibration=calibration,
                     name=best.name + ("+calibrated" if calibration and calibration != current.calibration else ""))
    accepted = better or calibration != current.calibration
    log.info("span control %r: %s exact F1 %.3f vs current %.3f (p=%.3f) on %d texts; calibration %s", control.name,
             candidate.name, metrics["exact_f1"], metrics["current_exact_f1"], p, judged, calibration)
    systems = [span_system(f"{control.name}: current ({current.name}), each text left out", preds[raw_current], golds,
                           control.labels)]
    systems += [span_system(f"{control.name}: {c.name}, each text left out", preds[c], golds, control.labels)
                for c in judgements]
    return SpanDecision(accepted, chosen.name if accepted else current.name, chosen if accepted else current, metrics,
                        systems)


@dataclass(frozen=True)
class TypingSetting:
    """How a typing head is trained and pooled (labeling.span_typing.TypingHead's fields)."""

    inputs: str = "context"
    has_none: bool = False
    weight_llm: float = 0.0
    pooling: str = "log"

    @property
    def name(self) -> str:
        pooled = "alone" if self.weight_llm == 0 else f"{self.pooling} w={self.weight_llm:g}"
        return f"typing-head ({self.inputs}{', none' if self.has_none else ''}, {pooled})"


# What a job chooses among (cross_chosen_typing): what is embedded, and whether a "none" class
# learns to drop mentions annotators would not mark. The head answers alone: pooling with the
# LLM's types never helped on wnut17 (span-bench --typing-head compares them all).
TYPING_SETTINGS = tuple(TypingSetting(inputs, none) for none in (True, False) for inputs in ("mention", "context"))


@dataclass
class TypingData:
    """Per text, the features of its gold mentions (with their label index) and of the mentions
    the LLM placed (with whether any occurrence is a gold span), embedded once for every fold."""

    gold_x: list[np.ndarray]
    gold_y: list[np.ndarray]
    placed_x: list[np.ndarray]
    placed_gold: list[np.ndarray]


def typing_data(embedder, control: SpanControl, texts: list[str], golds: list[list[tuple[int, int, str]]],
                placements: list[Placement], inputs: str) -> TypingData:
    pairs, cuts = [], []
    for text, gold, placement in zip(texts, golds, placements):
        shown = clean_text(text)
        pairs += [(clean_text(text[s:e]), shown) for s, e, _ in gold]
        pairs += [(m, placement.shown or shown) for m, _ in placement.mentions]
        cuts.append((len(gold), len(placement.mentions)))
    features = pair_features(embedder, inputs, pairs)
    data, at = TypingData([], [], [], []), 0
    for text, gold, placement, (n_gold, n_placed) in zip(texts, golds, placements, cuts):
        offsets = {(s, e) for s, e, _ in gold}
        data.gold_x.append(features[at: at + n_gold])
        data.placed_x.append(features[at + n_gold: at + n_gold + n_placed])
        at += n_gold + n_placed
        data.gold_y.append(np.array([control.labels.index(label) for _, _, label in gold], dtype=int))
        data.placed_gold.append(np.array([any(o in offsets for o in occurrences(m, text))
                                          for m, _ in placement.mentions], dtype=bool))
    return data


def labels_present(golds: list[list[tuple[int, int, str]]]) -> int:
    return len({label for gold in golds for _, _, label in gold})


def train_typing_head(data: TypingData, texts: list[int], n_labels: int, setting: TypingSetting) -> TypingHead | None:
    """The head trained on `texts`' gold mentions (and, with a "none" class, on their placed
    mentions that are not gold); None when fewer than two classes occur."""
    xs = [data.gold_x[i] for i in texts]
    ys = [data.gold_y[i] for i in texts]
    if setting.has_none:
        xs += [data.placed_x[i][~data.placed_gold[i]] for i in texts]
        ys += [np.full(int((~data.placed_gold[i]).sum()), n_labels, dtype=int) for i in texts]
    x, y = np.vstack(xs), np.concatenate(ys)
    if len(np.unique(y)) < 2:
        return None
    coef, intercept = train_head(x, y, n_labels + setting.has_none)
    return TypingHead(tuple(map(tuple, coef.tolist())), tuple(intercept.tolist()), setting.inputs, setting.has_none,
                      setting.weight_llm, setting.pooling)


def typing_folds(n: int, folds: int = TYPING_FOLDS) -> np.ndarray:
    return np.arange(n) % folds


def cross_fitted_typing(control: SpanControl, prompt: SpanPrompt, texts: list[str], placements: list[Placement],
                        data: TypingData, setting: TypingSetting, folds: np.ndarray) -> list[list] | None:
    """Each text's spans with its placement re-typed by a head trained on the other folds' texts
    (`prompt`'s own typing head replaced); None when a fold's head cannot be trained."""
    out: list[list] = [[] for _ in texts]
    for f in np.unique(folds):
        head = train_typing_head(data, list(np.flatnonzero(folds != f)), len(control.labels), setting)
        if head is None:
            return None
        typed = replace(prompt, typing=head)
        for i in np.flatnonzero(folds == f):
            out[i] = placed_spans(control, typed, texts[i], placements[i], features=data.placed_x[i])
    return out
