"""The embedding head on a MiniLM body whose top layers are fine-tuned on the control's ground
truth (SetFit, Tunstall et al. 2022): alone, pooled and mixed with the best LLM candidate; and,
where the job has the LLM's states at the answer, the same with the state beside the tuned
embedding, paired with the current prompt (whose states they are).

Where the frozen head alone is the best a job finds, fine-tuning the body moves the sentence
embeddings apart by label, and the logistic regression on them gains several points
(docs/benchmarks.md). It costs minutes, not seconds: its cross-validation fine-tunes once per
fold and once on all items. So it runs in a stage of its own after the job's two
(`Plan.late`, selection/optimizer.ControlSearch.tuned_stage), with its own time budget, and only
once a control has enough labelled items and after they have doubled since it last ran
(job.py): the version it might publish comes after the job's others and must beat them.
"""
from __future__ import annotations

import math
import time
from dataclasses import dataclass

import numpy as np

from ...labeling.head import state_beside, unit_states, unseen_label_mass
from ...labeling.tuned_body import TunedBody
from ..validation.control_kind import SINGLE
from ..validation.crossval import CandidateResult, OverBudget
from .body_tuning import LowerStates, tune_top, tuning_steps
from .contract import ControlJob, Plan
from .embedding_head import C_GRID, cross_chosen, head_probs, head_results, train_head
from .state_head import STATE_WEIGHTS, current_llm

NAME = "tuned-head"
PROBE_STEPS = 16  # optimizer steps timed before the stage's pace is trusted


@dataclass(frozen=True)
class Tuning:
    """How the body is fine-tuned (REFINE_TUNE_*): how many top layers, at most how many pairs."""
    layers: int = 3
    max_pairs: int = 2000
    seed: int = 0

    @classmethod
    def from_settings(cls, settings) -> "Tuning":
        return cls(layers=settings.refine_tune_layers, max_pairs=settings.refine_tune_max_pairs)


class StepPace:
    """Counts the optimizer steps of all the stage's fine-tunings; from the `PROBE_STEPS`-th on,
    stops the stage (OverBudget) as soon as the rest would end after `deadline` even at the pace
    so far less two standard errors: a machine too busy or too slow for the budget finds out in
    seconds, not after a whole fine-tuning. The margin matters because a step's time varies
    several-fold with the lengths of its batch's texts, so the mean of the first steps alone
    would stop a stage that fits."""

    def __init__(self, total: int, deadline: float, clock=time.monotonic):
        self.total, self.deadline, self.clock = total, deadline, clock
        self.done, self.started = 0, clock()
        self.last, self.squares = self.started, 0.0

    def step(self) -> None:
        now = self.clock()
        self.done += 1
        self.squares += (now - self.last) ** 2
        self.last = now
        if self.done < PROBE_STEPS:
            return
        mean = (now - self.started) / self.done
        spread = math.sqrt(max(0.0, self.squares / self.done - mean ** 2) / (self.done - 1))
        fast, left = max(0.0, mean - 2 * spread), self.total - self.done
        late = now + fast * left - self.deadline
        if late > 0:
            raise OverBudget(f"{left} more fine-tuning steps at {mean:.2f} s each (at least {fast:.2f}) would end "
                             f"{late:.0f} s or more after the stage's deadline")


def evaluate_tuned_head(job: ControlJob, tuning: Tuning, clock=time.monotonic) -> list[CandidateResult]:
    """Out-of-fold probabilities of the head on a body tuned on the other folds (the
    regularisation chosen among C_GRID as the frozen head's is), then the body and head fitted on
    all items. Stops (OverBudget, StepPace) when the fine-tunings could not end by `job.deadline`.
    The body is kept in `job.bodies` for the job to store if a version ships it. Where the job
    has the current pass's states at the answer, the same fine-tunings also give the head that
    reads them beside the tuned embedding (`tuned-head-state`, as state_head's on the frozen one)."""
    gold, folds, n_labels = job.gold, job.folds, len(job.control.labels)
    fold_list = np.unique(folds)
    options = {"seed": tuning.seed, "max_pairs": tuning.max_pairs}
    lower = LowerStates(job.service.embedder.model, job.texts, tuning.layers)
    pace = StepPace(sum(tuning_steps(gold[folds != f], **options) for f in fold_list) + tuning_steps(gold, **options),
                    job.deadline, clock)  # from the first step: the lower layers' pass is done
    states = job.current_states
    mean = None if states is None else np.asarray(states, dtype=np.float64).mean(axis=0)
    unit = None if states is None else unit_states(states, mean)  # once: each fold and weight slices it
    weights = (0.0,) if states is None else (0.0, *STATE_WEIGHTS)  # 0: the embedding alone
    oof = {(w, c): np.zeros((len(gold), n_labels)) for w in weights for c in C_GRID}
    for f in fold_list:
        train, test = np.flatnonzero(folds != f), np.flatnonzero(folds == f)
        layers = tune_top(lower, train, gold[train], on_step=pace.step, **options)
        train_emb, test_emb = lower.encode(layers, train), lower.encode(layers, test)
        unseen = unseen_label_mass(gold[train], n_labels)
        for w in weights:
            train_x, test_x = _read(train_emb, unit, w, train), _read(test_emb, unit, w, test)
            for c in C_GRID:
                coef, intercept = train_head(train_x, gold[train], n_labels, c=c)
                oof[(w, c)][test] = head_probs(coef, intercept, test_x, unseen)
    everything = np.arange(len(gold))
    layers = tune_top(lower, everything, gold, on_step=pace.step, **options)
    body = TunedBody.of(layers)
    job.bodies[body.name] = body
    embeddings = lower.encode(layers, everything)
    head_oof, (_, c) = cross_chosen({k: v for k, v in oof.items() if k[0] == 0.0}, gold, folds)
    coef, intercept = train_head(embeddings, gold, n_labels, c=c)
    results = head_results(NAME, job.best_llm() or job.judged_current, head_oof, coef, intercept, folds, c=c,
                           embedder=body.name)
    if states is None:
        return results
    head_oof, (w, c) = cross_chosen({k: v for k, v in oof.items() if k[0] > 0.0}, gold, folds)
    coef, intercept = train_head(_read(embeddings, unit, w, everything), gold, n_labels, c=c)
    return [*results, *head_results(f"{NAME}-state", current_llm(job), head_oof, coef, intercept, folds, c=c,
                                    embedder=body.name, state_weight=w, state_mean=tuple(mean.tolist()))]


def _read(embeddings: np.ndarray, unit: np.ndarray | None, weight: float, rows: np.ndarray) -> np.ndarray:
    """What a head with state weight `weight` reads for `rows`: the embeddings alone at 0."""
    return embeddings if weight == 0.0 else state_beside(embeddings, unit[rows], weight)


class TunedHead:
    """Single choice, with `job.tuning` set (the job decided the stage is due)."""

    def plans(self, job: ControlJob) -> list[Plan]:
        if job.kind is not SINGLE or job.tuning is None:
            return []
        return [Plan(NAME, lambda: evaluate_tuned_head(job, job.tuning), late=True)]
