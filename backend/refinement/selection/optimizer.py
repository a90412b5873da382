"""Pick the best candidate recipe for one control; the current recipe always competes.

A candidate replaces the current recipe only if its macro-F1 (or log-loss, at no macro-F1 cost)
on the same held-out items is better and a one-sided paired bootstrap says the gain is
significant, Holm–Bonferroni-corrected over every test of the job (family-wise REFINE_ALPHA);
the exact McNemar test on accuracy is reported beside it. Among significant candidates the best
macro-F1 wins, unless one whose macro-F1 is not significantly lower has a significantly lower
log-loss. Candidates run cheapest first and stop when the job's time budget is spent, except cheap
ones (fitted calibration, the embedding head: seconds). Reasoning candidates come last and must
also beat the best candidate without reasoning (select_paying): they cost the most to serve.
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
from ..candidates.embedding_head import evaluate_head
from ..candidates.few_shot import evaluate_few_shot, evaluate_nearest_shot
from ..candidates.instruction_rewrite import InstructionSearch, Rewrite
from ..candidates.reasoning_first import evaluate_reasoning, reasons
from ..validation.crossval import (CandidateResult, PlanSkipped, evaluate_fitted_calibration, evaluate_fixed, fold_ids,
                                   paced_logits)
from ..validation.significance import holm_rejections, mcnemar_exact, paired_bootstrap_macro_f1, paired_bootstrap_mean
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
        }


# A candidate whose probabilities are significantly better (log-loss) may not lose macro-F1 at all:
# a 0.01 margin let a version in whose held-out macro-F1 was noise-level lower, and it lost 0.09 on test.
F1_NON_INFERIORITY = 0.0
# Per-task nearest demos cost their tokens on every task (they cannot share the KV cache): 4 keep
# a task at about 4-5x the tokens of zero-shot.
NEAREST_SHOTS = 4
# The current version's pass may take this share of what is left of the job's time; what it has
# not scored by then is left out of the job, so that the plain prompt (as slow) and the cheap
# candidates still fit. Only with many labels or a slow model: clinc150's 151 intents cost ~2 s an
# item here, 200 items 7 minutes. The logit cache makes the next job's pass over the same items free.
CURRENT_SHARE = 0.4


def _log_loss_per_item(result: CandidateResult) -> np.ndarray:
    return -np.log(np.clip(result.probs[np.arange(len(result.gold)), result.gold], 1e-12, None))


def _macro_f1_gain_p(a: CandidateResult, b: CandidateResult) -> float:
    """p of a one-sided paired bootstrap that a's macro-F1 is above b's."""
    return paired_bootstrap_macro_f1(a.gold, a.probs.argmax(1), b.probs.argmax(1), a.probs.shape[1])[1]


def select(current: CandidateResult, candidates: list[CandidateResult], alpha: float) -> tuple[CandidateResult, int, int, float, bool]:
    """The selection rule alone (pure). Returns (chosen, McNemar b, c, p, accepted).

    A candidate qualifies if it is significantly better than the current recipe either in
    macro-F1 (labels) or in log-loss (honest probabilities) without losing macro-F1 (more than
    F1_NON_INFERIORITY), significance being Holm–Bonferroni over both tests of every candidate
    (family-wise error `alpha`); among those the best macro-F1 wins, unless one whose macro-F1 is
    not significantly lower has a significantly lower log-loss (choose_significant).
    """
    n_labels = current.probs.shape[1]
    current_loss = _log_loss_per_item(current)
    tests: list[tuple[CandidateResult, float, bool]] = []  # (candidate, p, would this test qualify it)
    for cand in candidates:
        gain, p_f1 = paired_bootstrap_macro_f1(cand.gold, cand.probs.argmax(1), current.probs.argmax(1), n_labels)
        loss_gain, p_loss = paired_bootstrap_mean(current_loss - _log_loss_per_item(cand))
        cand.metrics.update(p_f1_vs_current=round(p_f1, 4), p_logloss_vs_current=round(p_loss, 4),
                            log_loss=round(float(_log_loss_per_item(cand).mean()), 4))
        tests += [(cand, p_f1, gain > 0), (cand, p_loss, loss_gain > 0 and gain >= -F1_NON_INFERIORITY)]
    def loss_gain_p(a: CandidateResult, b: CandidateResult) -> float:
        return paired_bootstrap_mean(_log_loss_per_item(b) - _log_loss_per_item(a))[1]

    return choose_significant(current, candidates, tests, alpha, key=lambda r: (r.metrics["macro_f1"], -r.metrics["log_loss"]),
                              f1_gain_p=_macro_f1_gain_p, loss_gain_p=loss_gain_p)


def choose_significant(current, candidates, tests, alpha: float, key, f1_gain_p, loss_gain_p) -> tuple:
    """Holm over all tests; each candidate reports the p of its qualifying (or best) test.

    Then the choice among the qualifying candidates: the best by `key` (label F1), unless another
    one whose F1 is not significantly below it (`f1_gain_p(top, other)` ≥ alpha) has a
    significantly lower log-loss (`loss_gain_p(other, top)` < alpha); then the lowest log-loss of
    those. F1 differences of 0.01 are noise on a few hundred items; on product_reviews with 200
    labels, 4-shot+head led the cross-validated macro-F1 by 0.011 with a 0.13 worse log-loss,
    and on the test split lost to the head alone by 0.09 macro-F1."""
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
    top = max(pool, key=key)
    honester = [c for c in pool if c is not top and c.metrics["log_loss"] < top.metrics["log_loss"]
                and f1_gain_p(top, c) >= alpha and loss_gain_p(c, top) < alpha]
    best = min(honester, key=lambda r: r.metrics["log_loss"]) if honester else top
    if best is not top:
        best.metrics["chosen_over"] = f"{top.name} (F1 tie, significantly lower log-loss)"
    b, c, _ = mcnemar_exact(best.correct, current.correct)
    return best, b, c, best.metrics["p_vs_current"], best in significant


@dataclass
class Plan:
    """One way to build candidates. Plans run in order (cheapest LLM work first) until the job's
    time budget is spent; a `cheap` one (no LLM calls: a fit on logits or embeddings already
    computed, seconds) runs anyway, and the embedding head is usually the biggest lever. An LLM
    plan may stop between its folds (OverBudget) when it would end after the deadline, or give up
    for another reason (PlanSkipped)."""
    name: str
    run: Callable[[], "CandidateResult | list[CandidateResult]"]
    cheap: bool = False
    items: int = 0  # texts it scores: at the current pass's pace, the least time it can take


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
    `skipped` when not all did). No pace for a prompt with per-task demos: they cost 4-5x the
    tokens of a shared prompt, so its pace says nothing about the candidates'; nor for one that
    reasons first (its rationales cost the most)."""
    now = time.monotonic()
    logits, used, pace = paced_logits(service, control, prompt, texts,
                                      now + CURRENT_SHARE * max(0.0, deadline - now), partial=True)
    if not used.all():
        skipped.append(f"current: judged on {int(used.sum())} of {len(texts)} items; scoring the rest would take "
                       f"more than {CURRENT_SHARE:.0%} of the time budget left")
    return logits[used], used, None if prompt.nearest or prompt.reasoning else pace


def _best_llm(results: list[CandidateResult], current: CandidateResult, *,
              reasoned: bool = False) -> CandidateResult | None:
    """The LLM-only candidate the head or a reasoning mode builds on: the best by macro-F1 so far,
    among those without reasoning (or with, for `reasoned`)."""
    llm_only = [r for r in [current, *results] if r.recipe.head is None and reasons(r) == reasoned]
    return max(llm_only, key=lambda r: (r.metrics["macro_f1"], -r.metrics["ece"])) if llm_only else None


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
) -> ControlDecision:
    """`judge_mask` marks the items the current version was not built from (a version always
    looks good on its own demonstrations and training items); on the others it is judged by
    cross-fitting what it learnt (judge_current), where that can be done. Every candidate learns
    from all items, out of fold. With `rewrite`, the items its search looked at are not judged,
    for every candidate. `reasoning` lists the reasoning modes to try (reasoning.reasoning_modes),
    after every other LLM plan."""
    skipped: list[str] = []
    cur_logits, used, pace = judged_items(service, control, current.prompt, texts, deadline, skipped)
    texts, gold = [t for t, u in zip(texts, used) if u], np.asarray(gold)[used]
    judge_mask = None if judge_mask is None else np.asarray(judge_mask)[used]
    fold = fold_ids(len(texts), folds)
    base = PromptVersion(name="base")
    embeddings = service.embedder.encode(texts)
    cur = evaluate_fixed("current", current, service, control, texts, gold, cur_logits, embeddings)
    content_free = service.calibrator(control, current.prompt)
    served = current.calibrator or content_free
    if judge_mask is not None:
        cur, judge_mask = cross_fit_current(cur, served, cur_logits, embeddings, texts, ~judge_mask, fold,
                                            prior=content_free)
    cur_all_items = cur
    plans = [Plan("calibrated", lambda: evaluate_fitted_calibration("calibrated", current.prompt, cur_logits, gold, fold,
                                                                     content_free),
                  cheap=True)]
    if current.prompt.demos or current.prompt.instructions:
        plans.append(Plan("base", lambda: evaluate_fixed("base", ControlRecipe(base), service, control, texts, gold,
                                                         deadline=deadline), items=len(texts)))
    for k in sorted({min(shots, 4), shots}):
        if k > 0 and len(texts) >= 2 * k:
            plans.append(Plan(f"{k}-shot", lambda k=k: evaluate_few_shot(f"{k}-shot", base, service, control, texts, gold,
                                                                         fold, k, deadline), items=len(texts)))
    k_near = min(shots, NEAREST_SHOTS)
    if k_near > 0 and len(texts) >= 2 * k_near:
        plans.append(Plan(f"{k_near}-nearest", lambda: evaluate_nearest_shot(
            f"{k_near}-nearest", base, service, control, texts, gold, fold, k_near, embeddings, deadline),
            items=len(texts)))
    search = rewrite and InstructionSearch(rewrite, service, control, texts, gold, current, cur_logits, fold,
                                           judge_mask, deadline)
    if search:  # before the head, which may pool with it
        plans.append(Plan("rewrite", search.candidates))
    for mode in reasoning:  # after every other LLM plan: it builds on the best of them
        plans.append(Plan(mode.name, lambda mode=mode: _reasoning_plan(service, control, texts, gold, fold, mode,
                                                                       results, cur, deadline)))
    plans.append(Plan("head", lambda: evaluate_head(_best_llm(results, cur) or cur, embeddings, fold), cheap=True))
    plans.append(Plan("head-balanced", lambda: evaluate_head(_best_llm(results, cur) or cur, embeddings, fold,
                                                             balanced=True), cheap=True))
    if reasoning:
        plans.append(Plan("reasoning heads", lambda: _reasoning_heads(results, cur, embeddings, fold), cheap=True))
    results: list[CandidateResult] = []
    run_plans(plans, deadline, results, skipped, pace)
    if search:
        judge_mask, skipped = search.restrict(judge_mask), skipped + search.skipped
    judged = judge_mask is not None and judge_mask.sum() >= 2 and not judge_mask.all()
    if judged:
        cur, results = cur.subset(judge_mask), [r.subset(judge_mask) for r in results]
    best, b, c, p, accepted = select_paying(cur, results, alpha)
    table = [{"name": r.name, **r.metrics} for r in [cur, *results]]
    log.info("control %s: best %s %s vs current %s, p=%.4f, accepted=%s", control.name, best.name,
             best.metrics, cur.metrics, p, accepted)
    refit = None
    if not accepted:
        refit = refreshed_current(cur_all_items, served, cur_logits, embeddings, texts, fold, prior=content_free)
        if refit is not None:
            refit = refit.subset(judge_mask) if judged else refit
            no_worse(refit, cur, alpha)
    return ControlDecision(control.name, len(cur.gold), cur, best, accepted, b, c, p, table, skipped, results, refit,
                           used)


def _reasoning_plan(service, control, texts, gold, fold, mode: Reasoning, results, current, deadline,
                    clock: Callable[[], float] = time.monotonic):
    """A reasoning mode on the best LLM-only prompt so far. Self-consistency only once
    reason-then-select was scored in full (its pilot passed), if k times its time fits before the
    deadline, and its pilot must then be as accurate as reason-then-select's candidate."""
    base = _best_llm(results, current) or current
    if mode.samples == 1:
        return evaluate_reasoning(service, control, texts, gold, base, fold, mode, deadline)
    greedy = [r for r in results if reasons(r) and r.recipe.prompt.reasoning.samples == 1]
    if not greedy:
        raise PlanSkipped("reason-then-select was not scored in full, so neither is self-consistency")
    expected = greedy[0].metrics.get("seconds", 0.0) * mode.samples
    if clock() + expected > deadline:
        raise PlanSkipped(f"{mode.samples} rationales an item would take about {expected:.0f} s, "
                          f"{clock() + expected - deadline:.0f} s past the job's deadline")
    bar = max(greedy, key=lambda r: (r.metrics["macro_f1"], -r.metrics["ece"]))
    return evaluate_reasoning(service, control, texts, gold, base, fold, mode, deadline, pilot_bar=bar)


def _reasoning_heads(results, current, embeddings, fold) -> list[CandidateResult]:
    """The head pooled with the best reasoning candidate too, when it beats the best without:
    so the reasoning version that competes with e.g. `8-shot+head-mix` is `…+reason+head-mix`."""
    llm, plain = _best_llm(results, current, reasoned=True), _best_llm(results, current)
    if llm is None or (plain is not None and llm.metrics["macro_f1"] <= plain.metrics["macro_f1"]):
        return []
    return [pooled for balanced in (False, True)  # not the head alone again: [0]
            for pooled in evaluate_head(llm, embeddings, fold, balanced=balanced)[1:]]


def no_worse(refit, current, alpha: float, *, f1_gain_p=None, item_loss=None) -> bool:
    """Whether, on the same items, the refit's log-loss is lower and its label F1 not significantly
    lower than the current's (one-sided paired bootstrap at `alpha`); noted in its metrics. No gain
    has to be shown: it is the current recipe, fitted on more of the same ground truth.
    `f1_gain_p(a, b)` (p of a's F1 gain over b's) and `item_loss` default to single choice:
    macro-F1 and the log-loss of the gold label."""
    f1_gain_p, item_loss = f1_gain_p or _macro_f1_gain_p, item_loss or _log_loss_per_item
    p_current_better = f1_gain_p(current, refit)
    loss, current_loss = item_loss(refit).mean(), item_loss(current).mean()
    ok = bool(loss < current_loss and p_current_better >= alpha)
    refit.metrics.update(log_loss=round(float(loss), 4), current_log_loss=round(float(current_loss), 4),
                         p_f1_current_better=round(p_current_better, 4), no_worse=ok)
    return ok
