"""The selection rule, the order plans run in within the job's time budget, and what a control's
optimisation tries (pure logic)."""
import time

import numpy as np

from backend.evaluation.datasets import Dataset
from backend.labeling.calibration import fit_calibrator
from backend.labeling.label_config import parse_label_config
from backend.labeling.prompt import PromptVersion
from backend.labeling.recipe import ControlRecipe
from backend.labeling.service import LabelingService
from backend.labeling.templates import template_prompt
from backend.metrics.multi_label import predicted_sets
from backend.refinement.candidates.contract import Plan
from backend.refinement.candidates.instruction_rewrite import MINIBATCH, Rewrite, RewriteBudget
from backend.refinement.selection.optimizer import ControlSearch, optimize_control, run_plans, select
from backend.refinement.validation.control_kind import MULTIPLE
from backend.refinement.validation.crossval import CandidateResult, OverBudget
from tests.unit.helpers import GOOD, LABELS, MEH, Clock, RuleFollowingEngine, ScriptedTeacher, WordEmbedder, data


def _result(name, gold, pred, n_labels=2, confidence=0.8):
    probs = np.full((len(gold), n_labels), (1 - confidence) / (n_labels - 1))
    probs[np.arange(len(gold)), pred] = confidence
    return CandidateResult(name, ControlRecipe(), probs, np.asarray(gold))


def test_a_worse_or_insignificant_candidate_is_never_accepted():
    rng = np.random.default_rng(2)
    gold = rng.integers(0, 2, 100)
    current = _result("current", gold, np.where(rng.random(100) < 0.8, gold, 1 - gold))
    worse = _result("worse", gold, np.where(rng.random(100) < 0.6, gold, 1 - gold))
    same = _result("same", gold, current.probs.argmax(1))
    chosen, _, _, p, accepted = select(current, [worse, same], alpha=0.05)
    assert not accepted
    better = _result("better", gold, np.where(rng.random(100) < 0.97, gold, 1 - gold))
    chosen, b, c, p, accepted = select(current, [worse, better, same], alpha=0.05)
    assert accepted and chosen.name == "better" and p < 0.05 and b > c


def test_better_probabilities_with_the_same_labels_are_accepted_but_not_at_a_real_f1_cost():
    rng = np.random.default_rng(4)
    gold = rng.integers(0, 2, 200)
    pred = np.where(rng.random(200) < 0.8, gold, 1 - gold)
    overconfident = _result("current", gold, pred, confidence=0.99)
    honest = _result("calibrated", gold, pred, confidence=0.8)
    chosen, _, _, p, accepted = select(overconfident, [honest], alpha=0.05)
    assert accepted and chosen.name == "calibrated" and p < 0.05
    worse_pred = np.where(rng.random(200) < 0.65, gold, 1 - gold)
    cautious_but_wrong = _result("cautious", gold, worse_pred, confidence=0.55)
    _, _, _, _, accepted = select(overconfident, [cautious_but_wrong], alpha=0.05)
    assert not accepted


def test_candidates_that_are_only_lucky_are_rarely_shipped():
    """Ten candidates drawn like the current one (70 % right), judged on 25 items, 24 times:
    uncorrected, a job would ship one of them about a third of the time; Holm keeps it near alpha."""
    shipped = uncorrected = 0
    for seed in range(24):
        rng = np.random.default_rng(seed)
        gold = rng.integers(0, 2, 25)
        current = _result("current", gold, np.where(rng.random(25) < 0.7, gold, 1 - gold))
        noise = [_result(f"c{i}", gold, np.where(rng.random(25) < 0.7, gold, 1 - gold)) for i in range(10)]
        shipped += select(current, noise, alpha=0.05)[4]
        uncorrected += min(c.metrics["p_f1_vs_current"] for c in noise) < 0.05
    assert uncorrected >= 6
    assert shipped <= 3


def test_among_f1_ties_the_more_honest_candidate_wins_but_a_real_f1_lead_does_not_tie():
    rng = np.random.default_rng(11)
    gold = rng.integers(0, 2, 200)
    current = _result("current", gold, np.where(rng.random(200) < 0.6, gold, 1 - gold))
    good = np.where(rng.random(200) < 0.85, gold, 1 - gold)
    flip = np.flatnonzero(good != gold)[:2]  # two more right answers: a noise-level F1 lead
    lucky = good.copy()
    lucky[flip] = gold[flip]
    overconfident = _result("4-shot+head", gold, lucky, confidence=0.995)
    honest = _result("head", gold, good, confidence=0.85)
    chosen, _, _, _, accepted = select(current, [overconfident, honest], alpha=0.05)
    assert overconfident.metrics["macro_f1"] > honest.metrics["macro_f1"]
    assert accepted and chosen.name == "head" and "4-shot+head" in chosen.metrics["chosen_over"]

    much_better = _result("8-shot+head", gold, np.where(rng.random(200) < 0.95, gold, 1 - gold), confidence=0.99999)
    chosen, _, _, _, accepted = select(current, [much_better, honest], alpha=0.05)
    assert much_better.metrics["log_loss"] > honest.metrics["log_loss"]
    assert accepted and chosen.name == "8-shot+head" and "chosen_over" not in chosen.metrics


def test_a_log_loss_edge_that_is_only_noise_does_not_override_the_f1_leader():
    rng = np.random.default_rng(11)
    gold = rng.integers(0, 2, 200)
    current = _result("current", gold, np.where(rng.random(200) < 0.6, gold, 1 - gold))
    leader_pred = np.where(rng.random(200) < 0.88, gold, 1 - gold)
    follower_pred = leader_pred.copy()
    wrong = np.flatnonzero(leader_pred == gold)[:3]
    follower_pred[wrong] = 1 - gold[wrong]  # three fewer right: F1 behind by noise
    leader = _result("head", gold, leader_pred, confidence=0.95)
    follower = _result("calibrated+head", gold, follower_pred, confidence=0.88)
    chosen, _, _, _, accepted = select(current, [leader, follower], alpha=0.05)
    assert follower.metrics["log_loss"] < leader.metrics["log_loss"]  # lower, but not significantly
    assert accepted and chosen.name == "head" and "chosen_over" not in chosen.metrics


def test_run_plans_keeps_what_finished_and_says_why_the_rest_did_not_run():
    def over():
        raise OverBudget("stopped after 1/5 folds")

    results, skipped = [], []

    class Result:
        def __init__(self, name):
            self.name, self.metrics = name, {}

    plans = [Plan("calibrated", lambda: Result("calibrated"), cheap=True),
             Plan("8-shot", over),
             Plan("4-nearest", lambda: Result("4-nearest")),
             Plan("head", lambda: [Result("head"), Result("calibrated+head")], cheap=True)]
    run_plans(plans, deadline=-1.0, results=results, skipped=skipped)  # the budget is already spent
    assert [r.name for r in results] == ["calibrated", "head", "calibrated+head"]
    assert skipped == ["8-shot: time budget spent", "4-nearest: time budget spent"]

    results, skipped = [], []
    run_plans(plans, deadline=float("inf"), results=results, skipped=skipped)
    assert [r.name for r in results] == ["calibrated", "4-nearest", "head", "calibrated+head"]
    assert skipped == ["8-shot: stopped after 1/5 folds"]
    assert all("seconds" in r.metrics for r in results)


def test_a_plan_that_could_not_end_in_time_at_the_current_pass_pace_is_not_started():
    class Result:
        def __init__(self, name):
            self.name, self.metrics = name, {}

    clock, ran = Clock(), []
    clock.now = 500.0

    def plan(name, items, cheap=False):
        return Plan(name, lambda: ran.append(name) or Result(name), cheap=cheap, items=items)

    results, skipped = [], []
    plans = [plan("base", 50), plan("4-shot", 200), plan("unknown size", 0), plan("head", 200, cheap=True)]
    run_plans(plans, deadline=600.0, results=results, skipped=skipped, pace=1.5, clock=clock)
    assert ran == ["base", "unknown size", "head"]  # 75 s fits in 100 s; 300 s does not
    assert skipped == ["4-shot: 200 items at 1.5 s each would end 200 s after the job's deadline"]

    ran.clear()
    run_plans(plans, deadline=600.0, results=[], skipped=[], pace=None, clock=clock)  # no pace known: try them all
    assert ran == ["base", "4-shot", "unknown size", "head"]


def test_optimize_control_lists_the_rewrite_and_judges_all_candidates_without_the_search_items():
    control = parse_label_config(Dataset("t", LABELS, (), ()).label_config()).controls[0]
    service = LabelingService(RuleFollowingEngine(), embedder=WordEmbedder())
    texts, gold = data(100)
    teacher = ScriptedTeacher([[MEH, GOOD]])
    decision = optimize_control(service, control, texts, gold, ControlRecipe(), folds=5, shots=4, alpha=0.05,
                                deadline=time.monotonic() + 600, judge_mask=np.ones(100, bool),
                                rewrite=Rewrite(teacher, RewriteBudget(rounds=1, proposals=2, beam=2)))
    names = [row["name"] for row in decision.table]
    assert "rewrite" in names and "rewrite+calibrated" in names
    assert decision.n_eval == 100 - MINIBATCH
    row = next(r for r in decision.table if r["name"] == "rewrite")
    assert row["rewrite_teacher_calls"] == 2 and "p_vs_current" in row


def test_a_version_on_a_template_wording_is_judged_on_its_own_items_and_can_be_refreshed():
    """Version 0's template was chosen without labels: a version built on it is cross-fitted on
    the items it was built from and refit on all of them, as one on the built-in wording is; a
    rewritten wording was searched on those items, which stay out of the judging."""
    control = parse_label_config(Dataset("t", LABELS, (), ()).label_config()).controls[0]
    service = LabelingService(RuleFollowingEngine(), embedder=WordEmbedder())
    texts, gold = data(60)
    seen = np.arange(60) < 30
    calibrator = fit_calibrator(np.random.default_rng(0).normal(size=(30, 2)), gold[:30])

    def first_stage(prompt):
        search = ControlSearch(service, control, texts, gold, ControlRecipe(prompt, calibrator), folds=5, shots=4,
                               alpha=0.05, deadline=time.monotonic() + 600, judge_mask=~seen, candidates=())
        return search.first_stage()

    template = first_stage(template_prompt("answer", control))
    assert template.n_eval == 60 and template.refit is not None
    assert template.refit.recipe.prompt == template_prompt("answer", control)
    rewritten = first_stage(PromptVersion(name="rewrite", instructions=GOOD))
    assert rewritten.n_eval == 30 and rewritten.refit is None


def test_multilabel_selection_prefers_honest_sets_to_saying_yes_to_everything():
    """28 rare labels: 'yes' to all wins per-label macro-F1 at 0.5 but loses micro-F1 and log-loss."""
    rng = np.random.default_rng(3)
    n, k = 200, 28
    gold = np.zeros((n, k), dtype=int)
    gold[np.arange(n), rng.integers(0, k, n)] = 1
    yes_to_all = CandidateResult("current", ControlRecipe(), np.full((n, k), 0.7), gold, kind=MULTIPLE)
    honest_probs = np.where(gold == 1, 0.6, 0.02)
    honest_probs[rng.random(n) < 0.3] = 0.02  # misses some items entirely
    honest = CandidateResult("calibrated", ControlRecipe(), honest_probs, gold, kind=MULTIPLE)
    assert honest.metrics["macro_f1"] > 0 and honest.metrics["micro_f1"] > yes_to_all.metrics["micro_f1"]
    chosen, _, _, p, accepted = select(yes_to_all, [honest], alpha=0.05)
    assert accepted and chosen.name == "calibrated" and p < 0.05


def _multi_result(name, gold, flip, rng, confidence=0.8):
    pred = np.where(rng.random(gold.shape) < flip, 1 - gold, gold)
    return CandidateResult(name, ControlRecipe(), np.where(pred == 1, confidence, 1 - confidence), gold, kind=MULTIPLE)


def test_multilabel_selection_accepts_only_a_significantly_better_candidate():
    rng = np.random.default_rng(2)
    gold = (rng.random((150, 5)) < 0.3).astype(int)
    current = _multi_result("current", gold, 0.2, rng)
    worse = _multi_result("worse", gold, 0.35, rng)
    same = CandidateResult("same", ControlRecipe(), current.probs.copy(), gold, kind=MULTIPLE)
    _, _, _, _, accepted = select(current, [worse, same], alpha=0.05)
    assert not accepted
    better = _multi_result("better", gold, 0.03, rng)
    chosen, b, c, p, accepted = select(current, [worse, better, same], alpha=0.05)
    assert accepted and chosen.name == "better" and p < 0.05 and b > c
    assert (predicted_sets(chosen.probs) == gold).mean() > 0.9


def test_each_kind_of_control_gets_the_candidates_that_apply_to_it_in_order():
    from backend.labeling.calibration import Calibrator
    from backend.labeling.reasoning import Reasoning
    from backend.refinement.candidates.contract import ControlJob
    from backend.refinement.selection.optimizer import CANDIDATES
    from backend.refinement.validation.control_kind import SINGLE

    def plan_names(kind, gold, current=ControlRecipe()):
        result = CandidateResult("current", current, np.full(gold.shape if kind is MULTIPLE else (40, 2), 0.5), gold,
                                 kind=kind)
        job = ControlJob(None, None, kind, [""] * 40, gold, np.arange(40) % 5, np.zeros((40, 2)), current, result,
                         np.zeros((40, 2)), Calibrator.identity(2), 8, 1e9, reasoning=(Reasoning(),))
        return [plan.name for candidate in CANDIDATES for plan in candidate.plans(job)]

    single = np.arange(40) % 2
    assert plan_names(SINGLE, single) == ["calibrated", "4-shot", "8-shot", "4-nearest", "reason", "head",
                                          "head-balanced", "head-robust", "reasoning heads"]
    multiple = np.stack([single, 1 - single], 1).astype(np.int8)
    assert plan_names(MULTIPLE, multiple) == ["calibrated", "4-shot", "8-shot", "head"]
    rewritten = ControlRecipe(PromptVersion(name="v1", instructions="Label it."))
    assert plan_names(MULTIPLE, multiple, rewritten)[:2] == ["calibrated", "base"]  # the way back to the plain prompt


def test_multi_choice_candidates_fit_a_threshold_judged_cross_fitted_and_the_current_keeps_its_own():
    """The scripted LLM answers yes for a label word in the text (P about 0.9): a current version
    serving a threshold of 0.99 ticks one label per item (the most probable); the candidates tick
    both labels of an item that has two at 0.5 already, so no fitted threshold beats it."""
    from backend.engines.scripted import ScriptedEngine
    from backend.labeling.label_config import ChoiceControl

    control = ChoiceControl("tags", "text", "text", ("prize", "lunch", "win"), True)
    words = [("prize",), ("lunch",), ("win", "prize"), ("lunch", "win"), ("win",)]
    texts = [" ".join(words[i % 5]) + f" item {i}" for i in range(60)]
    gold = np.array([[int(label in words[i % 5]) for label in control.labels] for i in range(60)])
    service = LabelingService(ScriptedEngine(), embedder=WordEmbedder())
    current = ControlRecipe(threshold=0.99)
    decision = optimize_control(service, control, texts, gold, current, folds=5, shots=0, alpha=0.05,
                                deadline=time.monotonic() + 600)
    rows = {row["name"]: row for row in decision.table}
    assert "threshold" not in rows["current"] and rows["current"]["mean_labels_predicted"] == 1.0
    np.testing.assert_array_equal(decision.current.threshold, np.full(60, 0.99))  # judged as it serves
    for result in decision.results:
        assert (result.recipe.threshold or 0.5) == rows[result.name]["threshold"]
        served = predicted_sets(result.probs, result.threshold)
        assert rows[result.name]["mean_labels_predicted"] == round(float(served.sum(1).mean()), 3)
    assert decision.accepted and decision.best.metrics["micro_f1"] == 1.0 > rows["current"]["micro_f1"]
    assert decision.best.recipe.threshold is None  # 0.5 was as good on held-out items: nothing fitted ships
