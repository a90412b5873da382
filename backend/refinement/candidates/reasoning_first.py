"""Reason-then-select and self-consistency as candidates, tried only where they may pay for their cost.

A rationale costs generated tokens on every task the version serves (labeling/reasoning.py), so
these candidates are built from the best LLM-only candidate of the job, and:

- a pilot first: the reasoning prompt scores the PILOT_ITEMS oldest items, or half the items if
  that is fewer (a pilot of nearly every item would spare nothing when it loses; the logit cache
  keeps them for the next job); unless it is at least as accurate there as the candidate it is
  built from, the full pass is not paid for, and the decision says why;
- self-consistency (several sampled rationales) runs only after reason-then-select was scored in
  full and if k times that pass fits before the deadline; its pilot must match reason-then-select's
  candidate, and its pass stops (OverBudget) when its pace says it would end after the deadline;
- the optimizer judges a reasoning candidate against the best candidate without reasoning, not
  only against the current version (selection/optimizer.select_paying): a slower recipe must be
  significantly better than the fast one it would replace.
"""
from __future__ import annotations

import time
from dataclasses import replace
from typing import Callable

import numpy as np

from ...labeling.label_config import ChoiceControl
from ...labeling.prompt import PromptVersion, clip_demo
from ...labeling.reasoning import Reasoning
from ...labeling.recipe import ControlRecipe
from ...labeling.service import LabelingService
from ..validation.control_kind import SINGLE
from ..validation.crossval import (CandidateResult, PlanSkipped, evaluate_fitted_calibration, logits_matrix,
                                   score_as_shipped)
from .contract import ControlJob, Plan
from .embedding_head import evaluate_head

PILOT_ITEMS = 24
SAMPLING_TEMPERATURE = 0.7  # self-consistency's usual setting (Wang et al. 2023)


def reasons(result: CandidateResult) -> bool:
    return result.recipe.prompt.reasoning is not None


def mode(samples: int, max_tokens: int) -> Reasoning:
    """One greedy rationale, or `samples` sampled ones (self-consistency); ValueError if out of range."""
    return Reasoning(samples, max_tokens, 0.0 if samples == 1 else SAMPLING_TEMPERATURE)


def reasoning_modes(settings, engine) -> list[Reasoning]:
    """REFINE_REASONING_SAMPLES: 0 none, 1 reason-then-select, k > 1 also self-consistency of k;
    none for an engine that cannot write rationales."""
    samples, max_tokens = settings.refine_reasoning_samples, settings.refine_reasoning_tokens
    if not callable(getattr(engine, "rationale", None)):
        return []
    modes = [mode(1, max_tokens)] if samples >= 1 else []
    return modes + ([mode(samples, max_tokens)] if samples > 1 else [])


def evaluate_reasoning(service: LabelingService, control: ChoiceControl, texts: list[str], gold: np.ndarray,
                       base: CandidateResult, folds: np.ndarray, reasoning: Reasoning,
                       deadline: float | None, pilot_bar: CandidateResult | None = None) -> list[CandidateResult]:
    """`base`'s prompt reasoning first, with content-free and with fitted calibration (as the
    few-shot candidates); PlanSkipped when its pilot is less accurate than `pilot_bar` (default
    `base`; self-consistency is held to reason-then-select's candidate, which costs k times less)."""
    pilot_bar = pilot_bar or base
    source = base.recipe.prompt
    prompt = replace(source, reasoning=reasoning, name=f"{source.name}+{reasoning.name}")
    shown = {d.text for d in prompt.demos}
    demo_items = [i for i, t in enumerate(texts) if clip_demo(t) in shown]
    pilot = [i for i in range(len(texts)) if i not in set(demo_items)][:min(PILOT_ITEMS, len(texts) // 2)]
    known: dict[int, np.ndarray] = {}
    if pilot:
        pilot_logits = logits_matrix(service, control, prompt, [texts[i] for i in pilot], deadline)
        known = dict(zip(pilot, pilot_logits))
        pilot_right = (service.calibrator(control, prompt).apply(pilot_logits, False).argmax(1) == gold[pilot]).mean()
        bar_right = pilot_bar.correct[pilot].mean()
        if pilot_right < bar_right:
            raise PlanSkipped(f"right on {pilot_right:.0%} of a {len(pilot)}-item pilot against {bar_right:.0%} "
                              f"for {pilot_bar.name}: not worth its cost")

    def prompt_with(kept: list[int]) -> PromptVersion:
        """A demonstration item is scored without its own demonstration."""
        dropped = {clip_demo(texts[i]) for i in demo_items if i not in kept}
        return replace(prompt, demos=tuple(d for d in prompt.demos if d.text not in dropped))

    final, logits, contextual = score_as_shipped(service, control, texts, demo_items, prompt_with, multiple=False,
                                                 deadline=deadline, known=known)
    fitted = evaluate_fitted_calibration(f"{final.name}+calibrated", final, logits, gold, folds,
                                         service.calibrator(control, final))
    return [CandidateResult(final.name, ControlRecipe(final, None), contextual, gold), fitted]


class ReasoningFirst:
    """Each reasoning mode of the job (REFINE_REASONING_SAMPLES) on the best LLM-only prompt so far,
    after every other LLM plan (single choice)."""

    def plans(self, job: ControlJob) -> list[Plan]:
        if job.kind is not SINGLE:
            return []
        return [Plan(mode.name, lambda mode=mode: reasoning_plan(job, mode)) for mode in job.reasoning]


def reasoning_plan(job: ControlJob, mode: Reasoning, clock: Callable[[], float] = time.monotonic):
    """A reasoning mode on the best LLM-only prompt so far. Self-consistency only once
    reason-then-select was scored in full (its pilot passed), if k times its time fits before the
    deadline, and its pilot must then be as accurate as reason-then-select's candidate."""
    base = job.best_llm() or job.judged_current
    args = (job.service, job.control, job.texts, job.gold, base, job.folds, mode, job.deadline)
    if mode.samples == 1:
        return evaluate_reasoning(*args)
    greedy = [r for r in job.results if reasons(r) and r.recipe.prompt.reasoning.samples == 1]
    if not greedy:
        raise PlanSkipped("reason-then-select was not scored in full, so neither is self-consistency")
    expected = greedy[0].metrics.get("seconds", 0.0) * mode.samples
    if clock() + expected > job.deadline:
        raise PlanSkipped(f"{mode.samples} rationales an item would take about {expected:.0f} s, "
                          f"{clock() + expected - job.deadline:.0f} s past the job's deadline")
    bar = max(greedy, key=lambda r: job.kind.llm_rank(r.metrics))
    return evaluate_reasoning(*args, pilot_bar=bar)


class ReasoningHeads:
    """The head pooled with the best reasoning candidate too, when it beats the best without: so
    the reasoning version that competes with e.g. `8-shot+head-mix` is `…+reason+head-mix`."""

    def plans(self, job: ControlJob) -> list[Plan]:
        if job.kind is not SINGLE or not job.reasoning:
            return []
        return [Plan("reasoning heads", lambda: reasoning_heads(job), cheap=True, pools=True)]


def reasoning_heads(job: ControlJob) -> list[CandidateResult]:
    llm, plain = job.best_llm(reasoned=True), job.best_llm()
    if llm is None or (plain is not None and llm.metrics["macro_f1"] <= plain.metrics["macro_f1"]):
        return []
    return [pooled for balanced in (False, True)  # not the head alone again: [0]
            for pooled in evaluate_head(llm, job.embeddings, job.folds, balanced=balanced)[1:]]
