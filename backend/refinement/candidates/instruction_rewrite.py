"""Error-driven instruction rewrite: a teacher reads mistakes and proposes instructions; a beam
search on a small minibatch keeps the best; the winner becomes two ordinary candidates.

Leakage: every item the search looks at (the minibatch, and the mistakes shown to the teacher,
which are drawn from it) helped choose the instruction, so `restrict` removes them from the items
that judge *every* candidate. The minibatch prefers items that are not judged anyway (see
selection/current_refit.py: the current version's fixed demonstrations, or all its items when its own
instructions were searched), so a rewrite after a rewrite usually costs no judge items.

Cost: each proposal is scored on the minibatch (plus three content-free texts for its
calibration), each teacher generation is one more call; REFINE_REWRITE_MAX_CALLS caps the sum,
including the final evaluation on all items, and the job deadline is always respected: the search
stops while there is still time to evaluate its winner.
"""
from __future__ import annotations

import logging
import re
import time
from dataclasses import dataclass, field, replace

import numpy as np

from ...errors import BackendError
from ...labeling.label_config import ChoiceControl
from ...labeling.prompt import CONTENT_FREE_TEXTS, PromptVersion, default_instructions
from ...labeling.recipe import ControlRecipe
from ...labeling.service import LabelingService
from ...metrics.single_label import macro_f1
from ..validation.control_kind import SINGLE
from ..validation.crossval import CandidateResult, evaluate_fitted_calibration, evaluate_fixed, logits_matrix
from .contract import ControlJob, Plan
from .teacher import Mistake, Teacher, TeacherBrief

log = logging.getLogger(__name__)

MINIBATCH = 32  # items each proposal is quick-scored on: enough to rank instructions, cheap per proposal
SHOWN_MISTAKES = 4  # misclassified items the teacher reads per round (a 270M model's context and attention)
# Fewer held-out items than this after removing the search's items, and a paired bootstrap can only
# confirm very large gains, for every candidate: then the rewrite is not worth the items it takes.
MIN_JUDGE_ITEMS = 40
RESERVE_SECONDS = 30.0  # left to the candidates after the rewrite (the embedding head) within the deadline
CONTENT_FREE_CALLS = len(CONTENT_FREE_TEXTS)  # texts scored to calibrate a new prompt


@dataclass(frozen=True)
class RewriteBudget:
    rounds: int = 3
    proposals: int = 4
    beam: int = 2
    max_calls: int = 1200

    @classmethod
    def from_settings(cls, settings) -> "RewriteBudget":
        return cls(settings.refine_rewrite_rounds, settings.refine_rewrite_proposals,
                   settings.refine_rewrite_beam, settings.refine_rewrite_max_calls)


@dataclass(frozen=True)
class Rewrite:
    """What optimize_control needs to add the candidate: who teaches, within what budget."""

    teacher: Teacher
    budget: RewriteBudget = RewriteBudget()


@dataclass
class BeamEntry:
    instructions: str
    f1: float  # macro-F1 on the minibatch
    log_loss: float  # tie-break: the better-calibrated of equally good instructions
    logits: np.ndarray  # on the minibatch, reused by the final evaluation
    predicted: np.ndarray
    round: int

    @property
    def key(self) -> tuple[float, float]:
        return (self.f1, -self.log_loss)


@dataclass
class SearchLog:
    llm_calls: int = 0
    teacher_calls: int = 0
    proposals: int = 0  # sanitised proposals received
    rounds: int = 0
    start_f1: float = 0.0  # the current instructions on the same minibatch, for comparison
    stopped: str = ""
    history: list[dict] = field(default_factory=list)

    def summary(self) -> dict:
        return {"rewrite_llm_calls": self.llm_calls, "rewrite_teacher_calls": self.teacher_calls,
                "rewrite_proposals": self.proposals, "rewrite_rounds": self.rounds,
                "rewrite_start_minibatch_f1": round(self.start_f1, 4),
                "rewrite_stopped": self.stopped or "rounds done"}


def with_label_list(instructions: str, labels) -> str:
    """The proposal, plus the label list the default instructions end with when it does not name
    every label: the model should always see its options, whatever the teacher wrote."""
    if all(re.search(rf"(?<!\w){re.escape(label)}(?!\w)", instructions, re.IGNORECASE) for label in labels):
        return instructions
    return f"{instructions.rstrip()} Answer with exactly one of: {', '.join(labels)}."


def pick_minibatch(gold: np.ndarray, judged: np.ndarray, size: int, seed: int = 0) -> np.ndarray:
    """Indices of a label-balanced minibatch, taking items that are not judged first."""
    rng = np.random.default_rng(seed)
    queues = {}
    for label in np.unique(gold):
        idx = np.flatnonzero(gold == label)
        idx = idx[rng.permutation(len(idx))]
        queues[int(label)] = list(idx[np.argsort(judged[idx], kind="stable")])  # unjudged first
    picked: list[int] = []
    while len(picked) < size and any(queues.values()):
        for label in sorted(queues):
            if queues[label] and len(picked) < size:
                picked.append(int(queues[label].pop(0)))
    return np.array(sorted(picked), dtype=int)


def beam_update(beam: list[BeamEntry], new: list[BeamEntry], width: int) -> list[BeamEntry]:
    """The `width` best entries, best first; an earlier entry wins a tie (stable)."""
    return sorted(beam + new, key=lambda e: e.key, reverse=True)[:max(1, width)]


def shown_mistakes(entry: BeamEntry, gold: np.ndarray, texts: list[str], labels: tuple[str, ...],
                   k: int, seed: int) -> tuple[Mistake, ...]:
    """Up to `k` of the entry's minibatch mistakes, one gold label after another (rare ones too)."""
    wrong = np.flatnonzero(entry.predicted != gold)
    rng = np.random.default_rng(seed)
    by_gold: dict[int, list[int]] = {}
    for i in wrong[rng.permutation(len(wrong))]:
        by_gold.setdefault(int(gold[i]), []).append(int(i))
    picked: list[int] = []
    while len(picked) < k and any(by_gold.values()):
        for label in sorted(by_gold):
            if by_gold[label] and len(picked) < k:
                picked.append(by_gold[label].pop())
    return tuple(Mistake(texts[i], labels[gold[i]], labels[entry.predicted[i]]) for i in picked)


class InstructionSearch:
    """One control's rewrite: `candidates()` runs the search and evaluates its winner (a plan entry
    of optimize_control); `restrict(judge_mask)` takes the search's items out of the judging."""

    def __init__(self, rewrite: Rewrite, service: LabelingService, control: ChoiceControl, texts: list[str],
                 gold: np.ndarray, current: ControlRecipe, current_logits: np.ndarray, folds: np.ndarray,
                 judge_mask: np.ndarray | None, deadline: float):
        self.teacher, self.budget = rewrite.teacher, rewrite.budget
        self.service, self.control, self.texts, self.gold = service, control, list(texts), np.asarray(gold)
        self.current, self.current_logits, self.folds, self.deadline = current, current_logits, folds, deadline
        self.judged = np.ones(len(texts), bool) if judge_mask is None else np.asarray(judge_mask, bool)
        self.minibatch = pick_minibatch(self.gold, self.judged, MINIBATCH)
        self.used = np.zeros(len(texts), bool)  # set once the search has looked at the minibatch
        self.log = SearchLog()
        self.skipped: list[str] = []
        self._seconds_per_call: float | None = None  # measured on the first proposal scored
        self._teacher_seconds: float | None = None  # per generation, measured on the first round
        self._start = current.prompt.instructions or default_instructions(control)

    # --- wiring -------------------------------------------------------------------------------
    def restrict(self, judge_mask: np.ndarray | None) -> np.ndarray | None:
        """The judge mask of every candidate: also excluding what the search has seen."""
        if not self.used.any():
            return judge_mask
        judged = np.ones(len(self.texts), bool) if judge_mask is None else np.asarray(judge_mask, bool)
        return judged & ~self.used

    def candidates(self) -> list[CandidateResult]:
        """The best new instruction, content-free calibrated and with cross-fitted calibration; []
        when the rewrite was skipped (the reason is in `skipped`)."""
        taken = int(self.judged[self.minibatch].sum())
        remaining = int(self.judged.sum()) - taken
        if taken and remaining < MIN_JUDGE_ITEMS:
            self.skipped.append(f"rewrite: only {remaining} judge items would remain; need {MIN_JUDGE_ITEMS}")
            return []
        best = self.search()
        if best is None:
            self.skipped.append(f"rewrite: no usable instruction ({self.log.stopped or 'teacher proposed none'})")
            return []
        results = self.evaluate(best)
        for r in results:
            r.metrics.update(self.log.summary(), rewrite_minibatch_f1=round(best.f1, 4))
        log.info("control %s rewrite: %s; best new instruction (minibatch macro-F1 %.3f): %r",
                 self.control.name, self.log.summary(), best.f1, best.instructions)
        return results

    # --- search -------------------------------------------------------------------------------
    def search(self) -> BeamEntry | None:
        """Rounds of propose → quick-score → beam; returns the best *new* instruction (even if the
        start scored higher on the minibatch: the cross-validated comparison decides), or None.

        The teacher rewrites the beam's best from its mistakes and sees the rest of the beam with
        their scores (what was tried and how it did)."""
        mb = self.minibatch
        self.used[mb] = True
        start = self._entry(self._start, self.current_logits[mb], 0, self.current.prompt)
        beam, scored = [start], {self._start.casefold(): start}
        self.log.start_f1 = start.f1
        for r in range(1, self.budget.rounds + 1):
            parent = beam[0]
            brief = TeacherBrief(self._topic(), tuple(self.control.labels), parent.instructions,
                                 shown_mistakes(parent, self.gold[mb], [self.texts[i] for i in mb],
                                                tuple(self.control.labels), SHOWN_MISTAKES, seed=r),
                                 tried=tuple((e.instructions, e.f1) for e in beam[1:]))
            if not self._affordable(self.budget.proposals, teacher=True):
                break
            proposals = self._ask(brief, seed=r)
            if proposals is None:
                break
            new = []
            for text in (with_label_list(p, self.control.labels) for p in proposals):
                if text.casefold() in scored:
                    continue
                if not self._affordable(len(mb) + CONTENT_FREE_CALLS):
                    break
                entry = self._quick_score(text, r)
                scored[text.casefold()] = entry
                new.append(entry)
            self.log.rounds = r
            self.log.history.append({"round": r, "parent_f1": round(parent.f1, 4),
                                     "proposals": len(proposals), "scored": [round(e.f1, 4) for e in new]})
            beam = beam_update(beam, new, self.budget.beam)
            if self.log.stopped:
                break
        proposals = [e for e in scored.values() if e is not start]
        return max(proposals, key=lambda e: e.key) if proposals else None

    def _ask(self, brief: TeacherBrief, seed: int) -> list[str] | None:
        before = self.teacher.calls
        t0 = time.monotonic()
        try:
            proposals = self.teacher.propose(brief, self.budget.proposals, seed=seed)
        except BackendError as exc:  # an unreachable or failing teacher ends the search, not the job
            log.warning("rewrite teacher failed: %s", exc)
            self.log.stopped = f"teacher failed: {exc.message}"
            return None
        finally:
            made = self.teacher.calls - before
            self.log.teacher_calls += made
            self.log.llm_calls += made
        self._teacher_seconds = (time.monotonic() - t0) / max(1, made)
        self.log.proposals += len(proposals)
        return proposals

    def _quick_score(self, instructions: str, round_: int) -> BeamEntry:
        t0 = time.monotonic()
        logits = logits_matrix(self.service, self.control, self._prompt(instructions),
                               [self.texts[i] for i in self.minibatch])
        entry = self._entry(instructions, logits, round_)
        calls = len(self.minibatch) + CONTENT_FREE_CALLS
        self.log.llm_calls += calls
        self._seconds_per_call = (time.monotonic() - t0) / calls
        return entry

    def _entry(self, instructions: str, logits: np.ndarray, round_: int,
               prompt: PromptVersion | None = None) -> BeamEntry:
        """Content-free calibrated, whatever calibration the current recipe uses: every entry,
        the start included, is ranked the same way."""
        gold = self.gold[self.minibatch]
        probs = self.service.calibrator(self.control, prompt or self._prompt(instructions)).apply(logits, False)
        predicted = probs.argmax(1)
        loss = float(-np.log(np.clip(probs[np.arange(len(gold)), gold], 1e-12, None)).mean())
        return BeamEntry(instructions, macro_f1(gold, predicted, len(self.control.labels)), loss, logits,
                         predicted, round_)

    def _affordable(self, calls: int, teacher: bool = False) -> bool:
        """Can `calls` more be spent and the winner still be evaluated on every item in time?"""
        final = len(self.texts) - len(self.minibatch) + CONTENT_FREE_CALLS
        if self.log.llm_calls + calls + final > self.budget.max_calls:
            self.log.stopped = f"REFINE_REWRITE_MAX_CALLS={self.budget.max_calls} reached"
            return False
        per_call = self._teacher_seconds if teacher else self._seconds_per_call
        need = (per_call or 0.0) * calls + (self._seconds_per_call or 0.0) * final + RESERVE_SECONDS
        if time.monotonic() + need > self.deadline:
            self.log.stopped = "time budget spent"
            return False
        return True

    # --- final evaluation ----------------------------------------------------------------------
    def evaluate(self, best: BeamEntry) -> list[CandidateResult]:
        """On every item like the other candidates (minibatch logits reused): content-free
        calibration, and calibration fitted out of fold (cross-fitted)."""
        prompt = self._prompt(best.instructions)
        logits = np.zeros((len(self.texts), len(self.control.labels)))
        logits[self.minibatch] = best.logits
        rest = np.setdiff1d(np.arange(len(self.texts)), self.minibatch)
        if len(rest):
            logits[rest] = logits_matrix(self.service, self.control, prompt, [self.texts[i] for i in rest])
        self.log.llm_calls += len(rest)
        return [evaluate_fixed("rewrite", ControlRecipe(prompt), self.service, self.control, self.texts,
                               self.gold, logits),
                evaluate_fitted_calibration("rewrite+calibrated", prompt, logits, self.gold, self.folds,
                                            self.service.calibrator(self.control, prompt))]

    def _prompt(self, instructions: str) -> PromptVersion:
        return replace(self.current.prompt, name="rewrite", instructions=instructions)

    def _topic(self) -> str:
        return self.control.name.replace("_", " ").replace("-", " ").strip() or "label"


class InstructionRewrite:
    """A teacher rewrites the instructions from the current version's mistakes (single choice,
    when the job has a teacher). It runs before the heads, which may pool with it; the items its
    search looked at are then judged for no candidate."""

    def plans(self, job: ControlJob) -> list[Plan]:
        if job.kind is not SINGLE or not job.rewrite:
            return []
        search = InstructionSearch(job.rewrite, job.service, job.control, job.texts, job.gold, job.current,
                                   job.current_logits, job.folds, job.judge_mask, job.deadline)

        def after() -> None:
            job.judge_mask = search.restrict(job.judge_mask)
            job.skipped.extend(search.skipped)

        return [Plan("rewrite", search.candidates, after=after)]
