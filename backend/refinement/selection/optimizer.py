"""Pick the best candidate recipe for one control of any kind; the current recipe always competes.

A candidate replaces the current recipe only if its label F1 (or log-loss, at no F1 cost) on the
same held-out items is better and a one-sided paired bootstrap says the gain is significant,
Holm–Bonferroni-corrected over every test of the stage (family-wise REFINE_ALPHA); the exact
McNemar test on exact answers is reported beside it. Among significant candidates the best F1
wins, unless one whose F1 is not significantly lower has a significantly lower log-loss. The
control's kind (validation/control_kind.py) says which F1, loss and calibration fit. A job
searches in two stages (ControlSearch): the cheap candidates (fitted calibration, the embedding
heads: seconds), decided and published at once, then the LLM candidates (CANDIDATES order,
cheapest first, until the job's time budget is spent), which must beat the first stage's choice.
Reasoning candidates come last and must also beat the best candidate without reasoning
(select_paying): they cost the most to serve. A third stage (ControlSearch.tuned_stage), with a
budget of its own, runs the `late` plans (the fine-tuned head): significant against the current
version, then compared with the job's choice net of each one's selection optimism; where the job
shipped a refresh instead, compared with that refresh alone; where the current version reads a
fine-tuned body whose refresh is due, no worse than it, as a refresh.

Where no candidate is accepted and the current version's refresh is due (job.refresh_due), a
single-choice control gets the best candidate or current-recipe refit that is no worse than the
current version (ControlSearch._refresh); a multiple-choice one, its refit if no worse; one on
a fine-tuned body, the tuned stage's refresh.

A single-choice control whose current recipe learnt from no labels (version 0's wording or a
template's, current_refit.learnt_nothing) is replaced by the job's choice when that choice is
no worse (`no_worse`), as a refresh is: the significance gate guards a version that earned its
place on ground truth against a lucky candidate, and on few labels it often kept version 0
where the choice it turned down was better on new items (docs/how-it-learns.md#the-first-fit).
Such a first fit in the cheap stage is provisional: the second stage decides every candidate
against the current recipe again, as if the cheap stage had accepted nothing (significant, else
the first fit of the best), and that choice is the job's: an LLM candidate better on new items
than a cheap first fit could seldom beat it significantly on a few labels. Only where that
decision accepts nothing does the first fit stand, to be beaten as any choice is.
"""
from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field, replace
from typing import Callable

import numpy as np

from ...labeling.label_config import ChoiceControl
from ...labeling.prompt import PromptVersion
from ...labeling.reasoning import Reasoning
from ...labeling.recipe import ControlRecipe
from ...labeling.service import LabelingService
from ...labeling.templates import template_wording
from ..candidates.contract import Candidate, ControlJob, Plan
from ..candidates.embedding_head import EmbeddingHead
from ..candidates.few_shot import FewShot, NearestShot
from ..candidates.fitted_calibration import FittedCalibration
from ..candidates.instruction_rewrite import InstructionRewrite, Rewrite
from ..candidates.one_vs_rest_head import OneVsRestHead
from ..candidates.plain_prompt import PlainPrompt
from ..candidates.reasoning_first import ReasoningFirst, ReasoningHeads, reasons
from ..candidates.robust_head import RobustHead
from ..candidates.state_head import StateHead
from ..candidates.tuned_head import Tuning, TunedHead
from ..candidates.typed_instruction import TypedInstruction
from ..validation.control_kind import kind_of
from ..validation.crossval import (CandidateResult, PlanSkipped, evaluate_fixed, fold_ids, paced_logits,
                                   with_fitted_temperature)
from ..validation.label_errors import LabelIssue, label_issues
from ..validation.optimism import selection_optimism
from ..validation.significance import holm_rejections, mcnemar_exact, paired_bootstrap_mean
from .current_refit import cross_fit_current, learnt_nothing, refreshed_current, tuned_head

log = logging.getLogger(__name__)


@dataclass
class ControlDecision:
    control: str
    n_eval: int
    current: CandidateResult
    best: CandidateResult
    accepted: bool
    b: int = 0
    c: int = 0
    p_value: float = 1.0
    table: list[dict] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    results: list = field(default_factory=list)  # every candidate, with its recipe (not in the summary)
    refit: CandidateResult | None = None  # the current recipe refit on all items (when no candidate won)
    used: np.ndarray | None = None  # the items the job could afford to judge (see judged_items), of those given
    # the human labels most likely wrong (positions among the `used` items), from the out-of-fold
    # probabilities of `issues_from`, the candidate with the lowest log-loss on all of them
    issues: list[LabelIssue] = field(default_factory=list)
    issues_from: str = ""
    # the tuned stage's choice replaces the current version as its refresh: no worse, not better
    # (ControlSearch.tuned_stage's `refresh_tuned`)
    refreshes_tuned: bool = False
    # accepted as the control's first fit on labels: no worse than a recipe that learnt from none
    first_fit: bool = False
    # what a due refresh ships (when no candidate won): see ControlSearch._refresh
    refresh: CandidateResult | None = None

    def summary(self) -> dict:
        return {
            **({"current_refit": self.refit.metrics} if self.refit is not None else {}),
            **({"refresh": self.refresh.name} if self.refresh is not None else {}),
            "n_eval": self.n_eval,
            **({"judged_items": f"{int(self.used.sum())} of {len(self.used)}"} if self.used is not None
               and not self.used.all() else {}),
            "current": self.current.metrics,
            "best": self.best.name,
            "best_metrics": self.best.metrics,
            "accepted": self.accepted,
            "p_value": round(self.p_value, 5),
            "mcnemar": {"only_best_right": self.b, "only_current_right": self.c},
            "candidates": self.table,
            "skipped": self.skipped,
            **({"first_fit": True} if self.first_fit else {}),
            **({"suspects": len(self.issues), "suspects_from": self.issues_from} if self.issues_from else {}),
        }


# A candidate whose probabilities are significantly better (log-loss) may not lose label F1 at all:
# a small margin let in versions whose held-out F1 was noise-level lower and that lost on new items.
F1_NON_INFERIORITY = 0.0
# The current version's pass may take this share of what is left of the job's time; what it has
# not scored by then is left out of the job, so that the plain prompt (as slow) and the cheap
# candidates still fit. It matters with many labels or a slow model; the logit cache makes the
# next job's pass over the same items free.
CURRENT_SHARE = 0.4


def _f1_gain_p(a: CandidateResult, b: CandidateResult) -> float:
    """p of a one-sided paired bootstrap that a's label F1 is above b's."""
    return a.f1_gain(b)[1]


def _loss_gain_p(a: CandidateResult, b: CandidateResult) -> float:
    """p of a one-sided paired bootstrap that a's log-loss is below b's."""
    return paired_bootstrap_mean(b.item_loss - a.item_loss)[1]


def select(current: CandidateResult, candidates: list[CandidateResult],
           alpha: float) -> tuple[CandidateResult, int, int, float, bool]:
    """The selection rule alone (pure). Returns (chosen, McNemar b, c, p, accepted).

    A candidate qualifies if it is significantly better than the current recipe either in its
    label F1 (the control kind's: macro-F1 for single choice, micro-F1 for multiple) or in
    log-loss (honest probabilities) without losing label F1 (more than F1_NON_INFERIORITY),
    significance being Holm–Bonferroni over both tests of every candidate (family-wise error
    `alpha`); among those the best label F1 wins, unless one whose F1 is not significantly lower
    has a significantly lower log-loss (choose_significant).
    """
    current_loss = current.item_loss
    tests: list[tuple[CandidateResult, float, bool]] = []  # (candidate, p, would this test qualify it)
    for cand in candidates:
        gain, p_f1 = cand.f1_gain(current)
        loss = cand.item_loss
        loss_gain, p_loss = paired_bootstrap_mean(current_loss - loss)
        cand.metrics.update(p_f1_vs_current=round(p_f1, 4), p_logloss_vs_current=round(p_loss, 4),
                            log_loss=round(float(loss.mean()), 4))
        tests += [(cand, p_f1, gain > 0), (cand, p_loss, loss_gain > 0 and gain >= -F1_NON_INFERIORITY)]
    return choose_significant(current, candidates, tests, alpha)


def choose_significant(current: CandidateResult, candidates: list[CandidateResult], tests: list[tuple],
                       alpha: float) -> tuple:
    """Holm over all tests; each candidate reports the p of its qualifying (or best) test.

    Then the choice among the qualifying candidates: the best label F1 (ties to lower log-loss),
    unless another one whose F1 is not significantly below it has a significantly lower
    log-loss; then the lowest log-loss of those: F1 differences of 0.01 are noise on a few
    hundred items (docs/how-it-learns.md)."""
    label_metric = current.kind.label_metric
    significant = []
    for (cand, p, qualifies), passed in zip(tests, holm_rejections([t[1] for t in tests], alpha)):
        if passed and qualifies and cand not in significant:
            significant.append(cand)
            cand.metrics["p_vs_current"] = round(p, 4)
    for cand in candidates:
        if cand not in significant:
            cand.metrics["p_vs_current"] = round(min(p for c, p, _ in tests if c is cand), 4)
    pool = significant or candidates
    if not pool:
        return current, 0, 0, 1.0, False
    top = max(pool, key=lambda r: (r.metrics[label_metric], -r.metrics["log_loss"]))
    honester = [c for c in pool if c is not top and c.metrics["log_loss"] < top.metrics["log_loss"]
                and _f1_gain_p(top, c) >= alpha and _loss_gain_p(c, top) < alpha]
    best = min(honester, key=lambda r: r.metrics["log_loss"]) if honester else top
    if best is not top:
        best.metrics["chosen_over"] = f"{top.name} (F1 tie, significantly lower log-loss)"
    b, c, _ = mcnemar_exact(best.correct, current.correct)
    return best, b, c, best.metrics["p_vs_current"], best in significant


def run_plans(plans: list[Plan], deadline: float, results: list, skipped: list[str],
              pace: float | None = None, clock: Callable[[], float] = time.monotonic) -> None:
    """Run `plans`, appending what they produce to `results` (a plan may read it: the head pools
    with the best LLM candidate so far) and what the budget skipped to `skipped`. `pace`, the
    seconds per item of the current version's pass, skips a plan that could not end before the
    deadline even at that pace (a prompt with more shared demos costs about as much per item:
    they stay in the KV cache); a plan started anyway stops at its first chunk, wasting it."""
    for plan in plans:
        now = clock()
        if now > deadline and not plan.cheap:
            skipped.append(f"{plan.name}: time budget spent")
            continue
        if not plan.cheap and pace and plan.items and now + pace * plan.items > deadline:
            skipped.append(f"{plan.name}: {plan.items} items at {pace:.1f} s each would end "
                           f"{now + pace * plan.items - deadline:.0f} s after the job's deadline")
            continue
        t0 = time.monotonic()
        try:
            produced = plan.run()
        except PlanSkipped as stopped:
            skipped.append(f"{plan.name}: {stopped}")
            continue
        for result in produced if isinstance(produced, list) else [produced]:
            result.metrics["seconds"] = round(time.monotonic() - t0, 2)
            results.append(result)


def judged_items(service: LabelingService, control: ChoiceControl, prompt: PromptVersion, texts: list[str],
                 deadline: float, skipped: list[str]) -> tuple[np.ndarray, np.ndarray, float | None, np.ndarray | None]:
    """(the current prompt's logits on the items scored, mask of those items, seconds per item
    scored, the LLM's states at the answer of those items where the engine gives them): cached
    items, then the newest that fit CURRENT_SHARE of the time left (noted in `skipped` when not
    all did). No pace for a prompt with per-task demos: they cost several times the tokens of a
    shared prompt, so its pace says nothing about the candidates'; nor for one that reasons
    first (its rationales cost the most)."""
    now = time.monotonic()
    scored = paced_logits(service, control, prompt, texts, now + CURRENT_SHARE * max(0.0, deadline - now),
                          partial=True, states=True)
    used = scored.scored
    if not used.all():
        skipped.append(f"current: judged on {int(used.sum())} of {len(texts)} items; scoring the rest would take "
                       f"more than {CURRENT_SHARE:.0%} of the time budget left")
    return (scored.logits[used], used, None if prompt.nearest or prompt.reasoning else scored.pace,
            None if scored.states is None else scored.states[used])


def select_paying(current: CandidateResult, candidates: list[CandidateResult], alpha: float):
    """`select` among the candidates without reasoning; then a reasoning candidate replaces that
    choice (or the current version, if none was accepted) only if it is significantly better than
    it by the same rule: it costs generated tokens on every task it serves. Its metrics say what
    it was judged against."""
    plain = [r for r in candidates if not reasons(r)]
    reasoned = [r for r in candidates if reasons(r)]
    chosen = select(current, plain, alpha)
    if not reasoned:
        return chosen
    fast, fast_accepted = chosen[0], chosen[4]
    bar = fast if fast_accepted else current
    best, _, _, p, accepted = select(bar, reasoned, alpha)
    for r in reasoned:
        r.metrics["judged_against"] = bar.name
    if not accepted:
        return chosen
    b, c, _ = mcnemar_exact(best.correct, current.correct)
    return best, b, c, p, True


# The candidates a job tries, in the order their plans run within a stage (cheapest LLM work
# first; the heads after the LLM candidates they pool with; reasoning after every other LLM plan:
# it builds on the best of them). Each says for which controls it applies.
CANDIDATES: tuple[Candidate, ...] = (FittedCalibration(), PlainPrompt(), TypedInstruction(), FewShot(),
                                     NearestShot(), InstructionRewrite(), ReasoningFirst(), EmbeddingHead(),
                                     StateHead(), RobustHead(), OneVsRestHead(), ReasoningHeads(), TunedHead())


class ControlSearch:
    """One control's candidates in two stages, each decided and published on its own: first the
    cheap plans (fitted calibration, the embedding heads on the current version's logits: seconds
    once the current version's pass is done), then the LLM-heavy ones (prompts, demonstrations,
    rewrites, reasoning, and the heads again on the best of them). A user gets the better
    version the cheap stage found within a minute instead of after the whole search; a second
    version ships only if it is significantly better than the first (it is judged against it,
    by the same rule: each publication is one test family at `alpha`), unless the first was a
    first fit (see the module's docstring).

    `gold` is a label index per item (single choice) or an items × labels 0/1 matrix (multiple).
    `judge_mask` marks the items the current version was not built from (a version always looks
    good on its own demonstrations and training items); on the others it is judged by
    cross-fitting what it learnt (current_refit), where that can be done. Every candidate learns
    from all items, out of fold. With `rewrite`, the items its search looked at are not judged
    in the second stage, for every candidate. `reasoning` lists the reasoning modes to try
    (candidates.reasoning_first.reasoning_modes), `typed` the instructions annotators typed
    (candidates.typed_instruction). Creating one runs the current version's pass."""

    def __init__(self, service: LabelingService, control: ChoiceControl, texts: list[str], gold: np.ndarray,
                 current: ControlRecipe, *, folds: int, shots: int, alpha: float, deadline: float,
                 judge_mask: np.ndarray | None = None, rewrite: Rewrite | None = None,
                 reasoning: list[Reasoning] = (), typed: tuple[str, ...] = (), tuning: Tuning | None = None,
                 candidates: tuple[Candidate, ...] = CANDIDATES):
        self.control, self.alpha = control, alpha
        kind = kind_of(control)
        skipped: list[str] = []
        cur_logits, self.used, self.pace, states = judged_items(service, control, current.prompt, texts, deadline,
                                                                skipped)
        texts, gold = [t for t, u in zip(texts, self.used) if u], kind.targets(gold)[self.used]
        judge_mask = None if judge_mask is None else np.asarray(judge_mask)[self.used]
        self.fold = fold_ids(len(texts), folds)
        embeddings = service.embedder.encode(texts)
        cur = evaluate_fixed("current", current, service, control, texts, gold, cur_logits, embeddings, states=states)
        content_free = service.calibrator(control, current.prompt)
        self.served = current.calibrator or content_free
        # version 0's template was chosen without labels: its items can be cross-fitted and refreshed
        self.fixed_wording = template_wording(current.prompt, control)
        self.unfitted = not kind.multiple and learnt_nothing(current, control)
        if judge_mask is not None:
            cur, judge_mask = cross_fit_current(cur, self.served, cur_logits, embeddings, texts, ~judge_mask,
                                                self.fold, prior=content_free, fixed_wording=self.fixed_wording,
                                                states=states)
        self.job = ControlJob(service, control, kind, texts, gold, self.fold, embeddings, current, cur, cur_logits,
                              content_free, shots, deadline, judge_mask, rewrite, tuple(reasoning), tuple(typed),
                              tuning, skipped=skipped, current_states=states)
        self.plans = [plan for candidate in candidates for plan in candidate.plans(self.job)]
        self.first: ControlDecision | None = None
        self.second: ControlDecision | None = None

    def first_stage(self) -> ControlDecision:
        """The cheap plans alone, decided against the current version; when none is accepted, the
        current recipe refit on all items too (it costs what a cheap plan does, so a refresh can
        ship with the cheap stage instead of after the LLM passes)."""
        run_plans([p for p in self.plans if p.cheap and not p.late], self.job.deadline, self.job.results,
                  self.job.skipped)
        self.first = self._decide(refit=True)
        return self.first

    def second_stage(self, deadline: float | None = None) -> ControlDecision:
        self.second = self._second_stage(deadline)
        return self.second

    def tuned_stage(self, deadline: float, refreshed: CandidateResult | None = None, *,
                    refresh_tuned: bool = False) -> ControlDecision | None:
        """The late plans (the fine-tuned head), until `deadline`, as a family of their own. Their
        best must be significantly better than the current version, as every candidate of the
        job's first family is; then, if the job accepted a choice, it must also outscore that
        choice once both scores are lowered by their selection optimism (validation/optimism.py).
        The stages are split for latency alone and a head on a tuned body costs what a frozen
        one does to serve, so the later family is not asked for more than the earlier one; but
        the job's choice is the best of some thirty candidates on the same items and the late
        family's of three or six: compared raw, the job's choice wins on luck. If the job accepted no
        choice but shipped `refreshed` (the current recipe refit or a cheap candidate, which
        replaces the current version on being no worse: ControlSearch._refresh), the late best
        need only outscore that refresh the same way: it is what the stage would replace. With
        `refresh_tuned` (the current version reads a fine-tuned body and its refresh is due,
        job.refresh_due), the late best also replaces it
        when, though not significantly better, it is no worse (`no_worse`), as a refresh does: no
        other stage can refit a tuned body (current_refit.tuned_head), and without this a version
        tuned on the first 50 items would stay until a body tuned on all of them beat it
        significantly on the items it has not seen. None when no late plan applies; a decision
        that accepts nothing when they were skipped (`skipped` says why)."""
        job = self.job
        late = [p for p in self.plans if p.late]
        if not late:
            return None
        if self.second is None:
            self.second_stage()
        job.deadline = deadline
        before, skipped = len(job.results), len(job.skipped)
        run_plans(late, deadline, job.results, job.skipped)
        cur, everything, _ = self._judged()
        new = everything[before:]
        bar = self.second.best if self.second.accepted else refreshed or cur
        if not new:
            return ControlDecision(self.control.name, len(cur.gold), cur, bar, False, skipped=job.skipped[skipped:],
                                   used=self.used)
        best, b, c, p, accepted = select(cur, new, self.alpha)
        refreshes = False
        for r in new:
            r.metrics["judged_against"] = cur.name
        if bar is refreshed:  # a refresh chosen among the cheap candidates carries their optimism
            accepted = self._outscores(best, new, bar, [] if bar is self.first.refit else
                                       [r for r in self.first.results if r.name != bar.name])
        elif accepted and bar is not cur:
            accepted = self._outscores(best, new, bar, everything[:before])
        elif not accepted and bar is cur and refresh_tuned:
            accepted = refreshes = no_worse(best, cur, self.alpha)
        log.info("%s-choice control %s, tuned stage: best %s %s vs %s %s, accepted=%s", job.kind.name,
                 self.control.name, best.name, best.metrics, bar.name, bar.metrics, accepted)
        return ControlDecision(self.control.name, len(cur.gold), cur, best if accepted else bar, accepted, b, c, p,
                               [{"name": r.name, **r.metrics} for r in new], job.skipped[skipped:], new,
                               used=self.used, refreshes_tuned=refreshes)

    def _outscores(self, best: CandidateResult, family: list[CandidateResult], bar: CandidateResult,
                   earlier: list[CandidateResult]) -> bool:
        """Whether `best`, chosen from `family`, beats `bar`, the job's choice from `earlier`, in
        label F1 less each family's selection optimism (ties: the lower log-loss); noted in its metrics."""
        metric = self.job.kind.label_metric
        own, theirs = selection_optimism(family), selection_optimism([*earlier, bar])
        score, bar_score = best.metrics[metric] - own, bar.metrics[metric] - theirs
        best.metrics.update(optimism=round(own, 4), compared_with=bar.name, compared_optimism=round(theirs, 4),
                            compared_score=round(bar_score, 4))
        return (score, -float(best.item_loss.mean())) > (bar_score, -float(bar.item_loss.mean()))

    def _second_stage(self, deadline: float | None = None) -> ControlDecision:
        """The LLM-heavy plans (and the cheap ones that build on the best LLM candidate, again),
        until `deadline`. The decision is the control's outcome of the whole job: if the first
        stage kept the current version, every candidate against it, as one family; else the first
        stage's choice, unless a second-stage candidate is significantly better than it; if that
        choice was a first fit, the decision of every candidate against the current version
        again, where it accepts one."""
        job = self.job
        if self.first is None:
            self.first_stage()
        if deadline is not None:
            job.deadline = deadline
        seen, before = {r.name for r in job.results}, len(job.results)
        run_plans([p for p in self.plans if (not p.cheap or p.pools) and not p.late], job.deadline, job.results,
                  job.skipped, self.pace)
        job.results[before:] = [r for r in job.results[before:] if r.name not in seen]  # a head alone, again
        for plan in self.plans:
            if plan.after is not None:
                plan.after()
        return self._second_decision(seen)

    def _second_decision(self, seen: set[str]) -> ControlDecision:
        """The job's decision once the second stage's plans ran (`seen`: the first stage's results'
        names); apart from running them, so that a benchmark can decide from the same candidates
        as a rule it compares would."""
        job = self.job
        if not self.first.accepted:  # the refresh was chosen with the cheap stage, on the same items
            return replace(self._decide(refit=False), refit=self.first.refit, refresh=self.first.refresh)
        if self.first.first_fit:  # a provisional choice: the whole job decides as if it had not shipped
            again = self._decide(refit=False)
            if again.accepted:
                return again
        cur, everything, ready = self._judged()
        cheap = [r for r in everything if r.name in seen]
        later = [r for r in everything if r.name not in seen]
        select_paying(cur, cheap, self.alpha)  # their metrics against the current version, as judged now
        bar = next(r for r in cheap if r.name == self.first.best.name)
        best, _, _, p, accepted = select_paying(bar, later, self.alpha)
        for r in later:
            r.metrics.setdefault("judged_against", bar.name)  # a reasoning one: what it had to beat
        if not accepted:
            best, p = bar, self.first.p_value
        else:
            best = self._tempered(best)
        b, c, _ = mcnemar_exact(best.correct, cur.correct)
        log.info("%s-choice control %s, second stage: best %s %s vs %s %s, accepted=%s", job.kind.name,
                 self.control.name, best.name, best.metrics, bar.name, bar.metrics, accepted)
        return ControlDecision(self.control.name, len(cur.gold), cur, best, True, b, c, p,
                               [{"name": r.name, **r.metrics} for r in [cur, *everything]], list(job.skipped),
                               everything, None, self.used, *suspects(ready, job.kind.multiple),
                               first_fit=self.first.first_fit)

    def _tempered(self, best: CandidateResult) -> CandidateResult:
        """The chosen candidate with a fitted temperature after its content-free calibration, where
        it has nothing else fitted (crossval.with_fitted_temperature)."""
        folds = self.fold if len(best.gold) == len(self.fold) else fold_ids(len(best.gold), len(np.unique(self.fold)))
        return with_fitted_temperature(best, self.job.service.calibrator(self.control, best.recipe.prompt), folds)

    def _ready(self, results: list[CandidateResult]) -> list[CandidateResult]:
        """Multiple choice: each candidate with the threshold it would ship (CandidateResult.with_threshold)."""
        return [r.with_threshold(self.fold) for r in results] if self.job.kind.multiple else list(results)

    def _judged(self) -> tuple[CandidateResult, list[CandidateResult], list[CandidateResult]]:
        """The current version and every result so far, ready, on the items the job judges
        (judge_mask); and the ready results on all items (the label-error ranking's). Readying
        fits a multiple-choice candidate's thresholds by cross-validation: once per decision."""
        job, mask = self.job, self.job.judge_mask
        ready = self._ready(job.results)
        if mask is None or mask.sum() < 2 or mask.all():
            return job.judged_current, ready, ready
        return job.judged_current.subset(mask), [r.subset(mask) for r in ready], ready

    def _decide(self, *, refit: bool) -> ControlDecision:
        """Every result so far against the current version on the items the job judges; with
        `refit`, the current recipe refit on all items when none is accepted; the label-error
        ranking from every result so far."""
        job = self.job
        cur, judged, ready = self._judged()
        best, b, c, p, accepted = select_paying(cur, judged, self.alpha)
        first_fit = False
        if not accepted and self.unfitted and best is not cur:
            accepted = first_fit = no_worse(best, cur, self.alpha)
        if accepted:
            best = self._tempered(best)
        log.info("%s-choice control %s: best %s %s vs current %s, p=%.4f, accepted=%s", job.kind.name,
                 self.control.name, best.name, best.metrics, cur.metrics, p, accepted)
        fitted = refresh = None
        if refit and not accepted:
            fitted = refreshed_current(job.judged_current, self.served, job.current_logits, job.embeddings, job.texts,
                                       self.fold, prior=job.content_free, fixed_wording=self.fixed_wording,
                                       states=job.current_states)
            if fitted is not None:
                fitted = fitted.subset(job.judge_mask) if cur is not job.judged_current else fitted
                no_worse(fitted, cur, self.alpha)
            refresh = self._refresh(cur, judged, fitted)
        return ControlDecision(self.control.name, len(cur.gold), cur, best, accepted, b, c, p,
                               [{"name": r.name, **r.metrics} for r in [cur, *judged]], list(job.skipped), judged,
                               fitted, self.used, *suspects(ready, job.kind.multiple), first_fit=first_fit,
                               refresh=refresh)

    def _refresh(self, cur: CandidateResult, judged: list[CandidateResult],
                 fitted: CandidateResult | None) -> CandidateResult | None:
        """What a due refresh ships where no candidate was accepted: for a single-choice control,
        the best label F1 (ties: lower log-loss) among the candidates and the current recipe's
        refit that are no worse than the current version (`no_worse`); for a multiple-choice one,
        the refit alone, if no worse. The current version was chosen on half the ground truth
        there is now or less, and its refit keeps what was chosen then (the candidate, its
        regularisation, its label weighting), which may no longer suit the grown ground truth
        (docs/how-it-learns.md#refresh). A version on a fine-tuned body is refreshed by the
        tuned stage (tuned_stage's `refresh_tuned`). None: nothing is no worse."""
        pool = [fitted] if fitted is not None and fitted.metrics.get("no_worse") else []
        if not self.job.kind.multiple and not tuned_head(self.job.current):
            pool += [r for r in judged if r is not fitted and no_worse(r, cur, self.alpha)]
        if not pool:
            return None
        metric = self.job.kind.label_metric
        chosen = max(pool, key=lambda r: (r.metrics[metric], -float(r.item_loss.mean())))
        return chosen if chosen is fitted else self._tempered(chosen)


def optimize_control(service: LabelingService, control: ChoiceControl, texts: list[str], gold: np.ndarray,
                     current: ControlRecipe, **options) -> ControlDecision:
    """Both stages of a ControlSearch, with nothing published in between: the control's outcome
    of a whole job (benchmarks and tests decide as the job does)."""
    search = ControlSearch(service, control, texts, gold, current, **options)
    search.first_stage()
    return search.second_stage()


def suspects(results: list[CandidateResult], multiple: bool) -> tuple[list[LabelIssue], str]:
    """The label-error ranking on every item the candidates scored, from the candidate whose
    out-of-fold probabilities fit the human labels best (lowest log-loss): the sharper the
    probabilities, the fewer true labels it flags. Not the current version's: it was fitted on
    some of these items. No candidate ran, no ranking."""
    if not results:
        return [], ""
    source = min(results, key=lambda r: float(r.item_loss.mean()))
    return label_issues(source.probs, source.gold, multiple, source.threshold), source.name


def no_worse(refit: CandidateResult, current: CandidateResult, alpha: float) -> bool:
    """Whether, on the same items, the refit's log-loss is lower and its label F1 not significantly
    lower than the current's (one-sided paired bootstrap at `alpha`); noted in its metrics. No gain
    has to be shown: it is the current recipe, fitted on more of the same ground truth."""
    p_current_better = _f1_gain_p(current, refit)
    loss, current_loss = refit.item_loss.mean(), current.item_loss.mean()
    ok = bool(loss < current_loss and p_current_better >= alpha)
    refit.metrics.update(log_loss=round(float(loss), 4), current_log_loss=round(float(current_loss), 4),
                         p_f1_current_better=round(p_current_better, 4), no_worse=ok)
    return ok
