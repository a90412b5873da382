"""The contract every candidate implements, and what it is handed.

A candidate is one way to build a better recipe for a control from its ground truth. Given the
control's share of the job (`ControlJob`) it returns the plans it would run, none where it does
not apply (another kind of control, too few items, switched off). A plan returns one or more
CandidateResults: the recipe that would ship, fitted on all items, with out-of-fold
probabilities on `job.texts`, so selection compares every candidate item by item. Plans run in
the order selection lists the candidates (selection/optimizer.py), cheapest LLM work first; a new
candidate is a new module here and one entry in that list.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, Protocol

import numpy as np

from ...labeling.calibration import Calibrator
from ...labeling.label_config import ChoiceControl
from ...labeling.prompt import PromptVersion
from ...labeling.recipe import ControlRecipe
from ...labeling.service import LabelingService
from ..validation.control_kind import ControlKind
from ..validation.crossval import CandidateResult


@dataclass
class Plan:
    """One way to build candidates. Plans run in order until the job's time budget is spent; a
    `cheap` one (no LLM calls: a fit on logits or embeddings already computed, seconds) runs
    anyway, and the embedding head is usually the biggest lever. An LLM plan may stop between its
    folds (OverBudget) when it would end after the deadline, or give up for another reason
    (PlanSkipped). `after`, if set, runs once every plan has run or been skipped (a search that
    looked at some items takes them out of the judging). Cheap plans run first and are published
    on their own (selection/optimizer.ControlSearch); one that `pools` with the best LLM candidate
    so far runs again after the LLM plans. A `late` one runs only in a stage of its own after
    those two, with its own budget (the fine-tuned head: minutes of CPU)."""

    name: str
    run: Callable[[], "CandidateResult | list[CandidateResult]"]
    cheap: bool = False
    items: int = 0  # texts it scores: at the current pass's pace, the least time it can take
    after: Callable[[], None] | None = None
    pools: bool = False  # builds on job.best_llm(): worth running again once LLM candidates exist
    late: bool = False  # runs only in the stage after the job's two (minutes of CPU: the fine-tuned head)


@dataclass
class ControlJob:
    """One control's share of a refinement job: its ground truth (the items the job could afford
    to judge), the folds every candidate is scored on, the current version as judged, the budget,
    and the results of the plans that have run so far (a head pools with the best of them)."""

    service: LabelingService
    control: ChoiceControl
    kind: ControlKind
    texts: list[str]
    gold: np.ndarray
    folds: np.ndarray
    embeddings: np.ndarray
    current: ControlRecipe
    judged_current: CandidateResult
    current_logits: np.ndarray
    content_free: Calibrator  # the current prompt's content-free calibration (the prior of fitted ones)
    shots: int
    deadline: float
    judge_mask: np.ndarray | None = None
    rewrite: object | None = None  # instruction_rewrite.Rewrite: a teacher and its budget
    reasoning: tuple = ()  # labeling.reasoning.Reasoning modes to try
    typed: tuple[str, ...] = ()  # instructions annotators typed in the editor, most typed first
    tuning: object | None = None  # tuned_head.Tuning when the fine-tuned head's stage is due
    bodies: dict = field(default_factory=dict)  # fine-tuned bodies by name (labeling.tuned_body.TunedBody)
    results: list[CandidateResult] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    base: PromptVersion = PromptVersion(name="base")
    # the LLM's state at the answer of each item under the current prompt (`current_logits`' pass),
    # where the engine gives it (a head may read it beside the embedding: candidates/state_head.py)
    current_states: np.ndarray | None = None

    def best_llm(self, *, reasoned: bool = False) -> CandidateResult | None:
        """The LLM-only candidate a head or a reasoning mode builds on: the best so far (the
        current version included), among those without reasoning (or with, for `reasoned`)."""
        llm_only = [r for r in [self.judged_current, *self.results]
                    if r.recipe.head is None and (r.recipe.prompt.reasoning is not None) == reasoned]
        return max(llm_only, key=lambda r: self.kind.llm_rank(r.metrics)) if llm_only else None


class Candidate(Protocol):
    def plans(self, job: ControlJob) -> list[Plan]:
        """The plans this candidate would run for `job`, in order; [] where it does not apply."""
