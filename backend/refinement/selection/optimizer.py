"""Pick the best candidate recipe for one control of any kind; the current recipe always competes.

A candidate replaces the current recipe only if its label F1 (or log-loss, at no F1 cost) on the
same held-out items is better and a one-sided paired bootstrap says the gain is significant,
Holm–Bonferroni-corrected over every test of the job (family-wise REFINE_ALPHA); the exact
McNemar test on exact answers is reported beside it. Among significant candidates the best F1
wins, unless one whose F1 is not significantly lower has a significantly lower log-loss. The
control's kind (validation/control_kind.py) says which F1, loss and calibration fit. Candidates
(CANDIDATES) run cheapest first and stop when the job's time budget is spent, except cheap ones
(fitted calibration, the embedding head: seconds). Reasoning candidates come last and must also
beat the best candidate without reasoning (select_paying): they cost the most to serve.
"""
from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from typing import Callable

import numpy as np

from ...labeling.label_config import ChoiceControl
from ...labeling.prompt import PromptVersion
from ...labeling.reasoning import Reasoning
from ...labeling.recipe import ControlRecipe
from ...labeling.service import LabelingService
from ..candidates.contract import Candidate, ControlJob, Plan
from ..candidates.embedding_head import EmbeddingHead
from ..candidates.few_shot import FewShot, NearestShot
from ..candidates.fitted_calibration import FittedCalibration
from ..candidates.instruction_rewrite import InstructionRewrite, Rewrite
from ..candidates.one_vs_rest_head import OneVsRestHead
from ..candidates.plain_prompt import PlainPrompt
from ..candidates.reasoning_first import ReasoningFirst, ReasoningHeads, reasons
from ..candidates.typed_instruction import TypedInstruction
from ..validation.control_kind import kind_of
from ..validation.crossval import CandidateResult, PlanSkipped, evaluate_fixed, fold_ids, paced_logits
from ..validation.label_errors import LabelIssue, label_issues
from ..validation.significance import holm_rejections, mcnemar_exact, paired_bootstrap_mean
from .current_refit import cross_fit_current, refreshed_current

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

    @property
    def refreshed(self) -> CandidateResult | None:
        """The refit, if it may replace the current version (see `no_worse`)."""
        return self.refit if self.refit is not None and self.refit.metrics.get("no_worse") else None

    def summary(self) -> dict:
        return {
            **({"current_refit": self.refit.metrics} if self.refit is not None else {}),
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
                 deadline: float, skipped: list[str]) -> tuple[np.ndarray, np.ndarray, float | None]:
    """(the current prompt's logits on the items scored, mask of those items, seconds per item
    scored): cached items, then the newest that fit CURRENT_SHARE of the time left (noted in
    `skipped` when not all did). No pace for a prompt with per-task demos: they cost several
    times the tokens of a shared prompt, so its pace says nothing about the candidates'; nor for
    one that reasons first (its rationales cost the most)."""
    now = time.monotonic()
    logits, used, pace = paced_logits(service, control, prompt, texts,
                                      now + CURRENT_SHARE * max(0.0, deadline - now), partial=True)
    if not used.all():
        skipped.append(f"current: judged on {int(used.sum())} of {len(texts)} items; scoring the rest would take "
                       f"more than {CURRENT_SHARE:.0%} of the time budget left")
    return logits[used], used, None if prompt.nearest or prompt.reasoning else pace


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


# The candidates a job tries, in the order their plans run (cheapest LLM work first; the heads
# after the LLM candidates they pool with; reasoning after every other LLM plan: it builds on the
# best of them). Each says for which controls it applies.
CANDIDATES: tuple[Candidate, ...] = (FittedCalibration(), PlainPrompt(), TypedInstruction(), FewShot(),
                                     NearestShot(), InstructionRewrite(), ReasoningFirst(), EmbeddingHead(),
                                     OneVsRestHead(), ReasoningHeads())


def optimize_control(
    service: LabelingService,
    control: ChoiceControl,
    texts: list[str],
    gold: np.ndarray,
    current: ControlRecipe,
    *,
    folds: int,
    shots: int,
    alpha: float,
    deadline: float,
    judge_mask: np.ndarray | None = None,
    rewrite: Rewrite | None = None,
    reasoning: list[Reasoning] = (),
    typed: tuple[str, ...] = (),
    candidates: tuple[Candidate, ...] = CANDIDATES,
) -> ControlDecision:
    """`gold` is a label index per item (single choice) or an items × labels 0/1 matrix (multiple).
    `judge_mask` marks the items the current version was not built from (a version always looks
    good on its own demonstrations and training items); on the others it is judged by
    cross-fitting what it learnt (current_refit), where that can be done. Every candidate learns
    from all items, out of fold. With `rewrite`, the items its search looked at are not judged,
    for every candidate. `reasoning` lists the reasoning modes to try
    (candidates.reasoning_first.reasoning_modes), `typed` the instructions annotators typed
    (candidates.typed_instruction)."""
    kind = kind_of(control)
    skipped: list[str] = []
    cur_logits, used, pace = judged_items(service, control, current.prompt, texts, deadline, skipped)
    texts, gold = [t for t, u in zip(texts, used) if u], kind.targets(gold)[used]
    judge_mask = None if judge_mask is None else np.asarray(judge_mask)[used]
    fold = fold_ids(len(texts), folds)
    embeddings = service.embedder.encode(texts)
    cur = evaluate_fixed("current", current, service, control, texts, gold, cur_logits, embeddings)
    content_free = service.calibrator(control, current.prompt)
    served = current.calibrator or content_free
    if judge_mask is not None:
        cur, judge_mask = cross_fit_current(cur, served, cur_logits, embeddings, texts, ~judge_mask, fold,
                                            prior=content_free)
    job = ControlJob(service, control, kind, texts, gold, fold, embeddings, current, cur, cur_logits, content_free,
                     shots, deadline, judge_mask, rewrite, tuple(reasoning), tuple(typed), skipped=skipped)
    plans = [plan for candidate in candidates for plan in candidate.plans(job)]
    run_plans(plans, deadline, job.results, job.skipped, pace)
    for plan in plans:
        if plan.after is not None:
            plan.after()
    judge_mask, results = job.judge_mask, job.results
    if kind.multiple:
        results = [r.with_threshold(fold) for r in results]
    issues, issues_from = suspects(results, kind.multiple)
    judged = judge_mask is not None and judge_mask.sum() >= 2 and not judge_mask.all()
    if judged:
        cur, results = cur.subset(judge_mask), [r.subset(judge_mask) for r in results]
    best, b, c, p, accepted = select_paying(cur, results, alpha)
    table = [{"name": r.name, **r.metrics} for r in [cur, *results]]
    log.info("%s-choice control %s: best %s %s vs current %s, p=%.4f, accepted=%s", kind.name, control.name,
             best.name, best.metrics, cur.metrics, p, accepted)
    refit = None
    if not accepted:
        refit = refreshed_current(job.judged_current, served, cur_logits, embeddings, texts, fold, prior=content_free)
        if refit is not None:
            refit = refit.subset(judge_mask) if judged else refit
            no_worse(refit, cur, alpha)
    return ControlDecision(control.name, len(cur.gold), cur, best, accepted, b, c, p, table, job.skipped, results,
                           refit, used, issues, issues_from)


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
