"""Score candidate recipes on held-out ground truth (k-fold cross-validation, out-of-fold predictions).

Every candidate is judged on the same items, so two candidates can be compared pair by pair.
A recipe that learns from ground truth (fitted calibration, demonstrations) only ever sees the
other folds when predicting an item.
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field, replace
from typing import Callable, NamedTuple

import numpy as np

from ...labeling.calibration import Calibrator
from ...labeling.label_config import ChoiceControl
from ...labeling.prompt import PromptVersion
from ...labeling.recipe import ControlRecipe
from ...labeling.service import LabelingService
from ...labeling.threshold import cross_fitted_threshold, fit_threshold
from .control_kind import SINGLE, ControlKind, kind_of


@dataclass
class CandidateResult:
    """A candidate's out-of-fold probabilities on the judged items, with the recipe fitted on all
    of them; `kind` says how they are read (single choice: items × labels distributions and a label
    index per item; multiple choice: P(yes) per item and label, and a 0/1 matrix)."""

    name: str
    recipe: ControlRecipe  # the deployable recipe, fitted on all ground truth
    probs: np.ndarray  # out-of-fold probabilities, one row per evaluated item
    gold: np.ndarray
    metrics: dict = field(default_factory=dict)
    kind: ControlKind = SINGLE
    # multiple choice: the decision threshold of each item (cross-fitted when the recipe's own was
    # fitted on these items); by default the recipe's threshold, or 0.5
    threshold: np.ndarray | None = None

    def __post_init__(self):
        if self.threshold is None and self.recipe.threshold is not None:
            self.threshold = np.full(len(self.gold), self.recipe.threshold)
        self.metrics = self.kind.summarize(self.gold, self.probs, self.threshold)

    def subset(self, mask: np.ndarray) -> "CandidateResult":
        """The same candidate judged on the masked items only (its recipe is unchanged)."""
        out = CandidateResult(self.name, self.recipe, self.probs[mask], self.gold[mask], kind=self.kind,
                              threshold=None if self.threshold is None else self.threshold[mask])
        out.metrics.update({k: v for k, v in self.metrics.items() if k not in out.metrics})  # cost, notes
        return out

    def like(self, name: str, recipe: ControlRecipe, probs: np.ndarray) -> "CandidateResult":
        """Another candidate of the same control, judged on the same items."""
        return CandidateResult(name, recipe, probs, self.gold, kind=self.kind)

    def with_threshold(self, folds: np.ndarray) -> "CandidateResult":
        """Multiple choice: the same candidate deciding with a threshold fitted on ground truth
        (labeling/threshold.py), judged with thresholds cross-fitted on `folds`; kept only if
        that judged label F1 beats the candidate's own rule (0.5 unless its recipe has one):
        with few labels per class the fitted cut can be worse on new items, and the
        cross-fitted F1 says so (docs/benchmarks.md)."""
        out = CandidateResult(self.name, replace(self.recipe, threshold=fit_threshold(self.probs, self.gold)),
                              self.probs, self.gold, kind=self.kind,
                              threshold=cross_fitted_threshold(self.probs, self.gold, folds))
        metric = self.kind.label_metric
        if out.metrics[metric] <= self.metrics[metric]:
            self.metrics.setdefault("threshold", self.recipe.threshold or 0.5)
            return self
        out.metrics.update({k: v for k, v in self.metrics.items() if k not in out.metrics})
        out.metrics["threshold"] = out.recipe.threshold
        return out

    def f1_gain(self, other: "CandidateResult") -> tuple[float, float]:
        """(label F1 of this candidate minus `other`'s on the same items, one-sided bootstrap p)."""
        return self.kind.label_f1_gain(self.gold, self.probs, other.probs, self.threshold, other.threshold)

    @property
    def correct(self) -> np.ndarray:
        return self.kind.correct(self.gold, self.probs, self.threshold)

    @property
    def item_loss(self) -> np.ndarray:
        return self.kind.item_loss(self.gold, self.probs)


class PlanSkipped(Exception):
    """A plan gave up, for the reason in its message (noted in the decision's `skipped`)."""


class OverBudget(PlanSkipped):
    """An LLM plan stopped part way: at its pace so far, the rest would end after the job's deadline."""


def pace_budget(deadline: float | None, total: int, unit: str = "items",
                clock: Callable[[], float] = time.monotonic) -> Callable[[int], None]:
    """A callback for an LLM plan to call with how much of its `total` work is done, every chunk.
    The deadline is otherwise only checked between plans, and one pass over 200 items can take
    minutes with many labels: this bounds the overrun to one chunk, and no plan is cut without a
    reason in the decision's `skipped`."""
    start = clock()

    def after(done: int) -> None:
        if deadline is None or done <= 0 or done >= total:
            return
        now = clock()
        finish = now + (now - start) / done * (total - done)
        if finish > deadline:
            raise OverBudget(f"stopped after {done}/{total} {unit} ({now - start:.0f} s); "
                             f"the rest would end {finish - deadline:.0f} s after the job's deadline")

    return after


def fold_ids(n: int, k: int, seed: int = 0) -> np.ndarray:
    order = np.random.default_rng(seed).permutation(n)
    folds = np.empty(n, dtype=int)
    folds[order] = np.arange(n) % max(2, min(k, n))
    return folds


# Items scored between two looks at the clock: an LLM pass overruns its time by one chunk at most.
PACE_CHUNK = 8


class Pass(NamedTuple):
    logits: np.ndarray
    scored: np.ndarray  # which items have logits
    pace: float | None  # seconds per item the engine scored (not cached); None below one chunk
    states: np.ndarray | None = None  # the LLM's state at the answer of each item scored, when asked for


def logits_matrix(service: LabelingService, control: ChoiceControl, prompt: PromptVersion, texts,
                  deadline: float | None = None) -> np.ndarray:
    """A nearest-demo prompt shows no item its own labelled copy: the current version's pool holds
    the items it was built from, and the candidates learn from these logits. With a `deadline`,
    OverBudget as soon as the pace says the pass would end after it."""
    return paced_logits(service, control, prompt, texts, deadline, partial=False)[0]


def paced_logits(service: LabelingService, control: ChoiceControl, prompt: PromptVersion, texts,
                 stop_at: float | None, *, partial: bool, states: bool = False,
                 clock: Callable[[], float] = time.monotonic) -> Pass:
    """The logits of the items scored. What the logit cache holds comes first, for free; the
    rest is scored newest first (`texts` run oldest to newest) in chunks of PACE_CHUNK.

    `partial` (the current version's pass): stop once `stop_at` has passed and return what is
    scored; the job then judges every candidate on those items. Otherwise all or nothing:
    OverBudget as soon as the pace of the chunks so far says the rest would end after `stop_at`.
    With `states` (where the service `gives_state`), each item's state at the answer too."""
    texts = list(texts)
    demos = service.task_demos(prompt, texts, leave_out_self=True)
    logits = np.zeros((len(texts), len(control.labels)))
    scored = service.cached(control, prompt, texts, demos)
    states = states and service.gives_state(control, prompt)
    held: np.ndarray | None = None

    def score(rows: np.ndarray) -> None:
        nonlocal held
        results = service.score_texts(control, prompt, [texts[i] for i in rows], [demos[i] for i in rows],
                                      states=states)
        logits[rows] = np.stack([s.logits for s in results])
        scored[rows] = True
        if states:
            held = np.zeros((len(texts), len(results[0].state)), np.float32) if held is None else held
            held[rows] = np.stack([s.state for s in results])

    if scored.any():
        score(np.flatnonzero(scored))
    todo = np.flatnonzero(~scored)[::-1]
    check = pace_budget(None if partial else stop_at, len(todo), clock=clock)
    start, done = clock(), 0
    for begin in range(0, len(todo), PACE_CHUNK):
        if partial and begin and stop_at is not None and clock() >= stop_at:
            break
        check(begin)
        score(todo[begin:begin + PACE_CHUNK])
        done = min(len(todo), begin + PACE_CHUNK)
    return Pass(logits, scored, (clock() - start) / done if done >= PACE_CHUNK else None, held)


def evaluate_fixed(name: str, recipe: ControlRecipe, service: LabelingService, control: ChoiceControl,
                   texts, gold: np.ndarray, logits: np.ndarray | None = None,
                   embeddings: np.ndarray | None = None, deadline: float | None = None,
                   states: np.ndarray | None = None) -> CandidateResult:
    """A recipe used as is (the current version, or one that learns nothing from ground truth);
    `states`, the LLM's states at the answer of `logits`' items, for a head that reads them."""
    kind = kind_of(control)
    logits = logits_matrix(service, control, recipe.prompt, texts, deadline) if logits is None else logits
    calibrator = recipe.calibrator or service.calibrator(control, recipe.prompt)
    probs = calibrator.apply(logits, kind.multiple)
    if recipe.head is not None:  # `embeddings` are the bundled MiniLM's; a fine-tuned head reads its own body's
        probs = recipe.head.combine(probs, service.head_embeddings(recipe.head, list(texts), embeddings), states)
    return CandidateResult(name, recipe, probs, gold, kind=kind)


def with_fitted_temperature(result: CandidateResult, prior: Calibrator, folds: np.ndarray) -> CandidateResult:
    """A single-choice candidate served with its prompt's content-free calibration alone (`prior`;
    no fitted calibrator, no head), with a temperature fitted on ground truth after it, cross-fitted
    on `folds`, if that lowers its log-loss on these items. Content-free calibration corrects which
    label the model leans to, not how sure it is, and a k-shot prompt can be far over- or
    under-confident. Applied to a chosen candidate only: the temperature changes no label, so the
    decision that chose it stands, and no test is added to its family. Else `result` as it was."""
    if (result.kind.multiple or result.recipe.calibrator is not None or result.recipe.head is not None
            or prior.method == "identity" or len(np.unique(folds)) < 2):
        return result
    probs, t = result.kind.cross_fitted_temperature(result.probs, result.gold, folds)
    tempered = CandidateResult(result.name, replace(result.recipe, calibrator=prior.tempered(t)), probs, result.gold,
                               kind=result.kind)
    loss, before = float(tempered.item_loss.mean()), float(result.item_loss.mean())
    if loss >= before:
        return result
    tempered.metrics = {**result.metrics, **tempered.metrics, "log_loss": round(loss, 4),
                        "fitted_temperature": round(t, 3), "log_loss_before_temperature": round(before, 4)}
    return tempered


def evaluate_fitted_calibration(name: str, prompt: PromptVersion, logits: np.ndarray, gold: np.ndarray,
                                folds: np.ndarray, prior: Calibrator | None = None,
                                kind: ControlKind = SINGLE) -> CandidateResult:
    """A calibration fitted on the other folds (per-label bias and temperature; per-label bias and
    scale for multiple choice), around `prior` (the prompt's content-free calibration)."""
    probs = np.zeros_like(logits, dtype=np.float64)
    for f in np.unique(folds):
        test = folds == f
        probs[test] = kind.fit_calibration(logits[~test], gold[~test], prior).apply(logits[test], kind.multiple)
    return CandidateResult(name, ControlRecipe(prompt, kind.fit_calibration(logits, gold, prior)), probs, gold,
                           kind=kind)


def score_as_shipped(service: LabelingService, control: ChoiceControl, texts: list[str], picked: list[int],
                     prompt_with: Callable[[list[int]], PromptVersion], multiple: bool,
                     deadline: float | None = None, known: dict[int, np.ndarray] | None = None):
    """(the prompt that ships, its logits, its content-free calibrated probabilities) for a fixed
    k-shot prompt whose demonstrations are the items `picked`: every item is scored with that
    prompt, except that a demonstration item is scored with the other k − 1 (no item sees its own
    label). Single and multiple choice alike. `known`: logits of some items (not demonstrations)
    with the final prompt, already scored (a pilot's)."""
    final = prompt_with(picked)
    known = known or {}
    logits = np.zeros((len(texts), len(control.labels)))
    contextual = np.zeros_like(logits)
    rest = np.setdiff1d(np.arange(len(texts)), picked)
    todo = np.array([i for i in rest if i not in known], dtype=int)
    for i, row in known.items():
        logits[i] = row
    if len(todo):
        logits[todo] = logits_matrix(service, control, final, [texts[i] for i in todo], deadline)
    contextual[rest] = service.calibrator(control, final).apply(logits[rest], multiple)
    for i in picked:
        without = prompt_with([j for j in picked if j != i])
        logits[i] = logits_matrix(service, control, without, [texts[i]])[0]
        contextual[i] = service.calibrator(control, without).apply(logits[i:i + 1], multiple)[0]
    return final, logits, contextual
