"""A job's search in two stages: the cheap candidates are decided (and published) first, and an
LLM candidate replaces their choice only if it is significantly better than it (pure logic:
scripted candidates with a known share of right answers, the scripted engine as the current
version, which knows neither label word and so answers alike for every text)."""
import time

import numpy as np

from backend.evaluation.datasets import Dataset
from backend.labeling.calibration import BATCH, Calibrator
from backend.labeling.head import HeadWeights
from backend.labeling.label_config import parse_label_config
from backend.labeling.prompt import PromptVersion
from backend.labeling.recipe import ControlRecipe
from backend.labeling.service import LabelingService
from backend.refinement.candidates.contract import Plan
from backend.refinement.selection.optimizer import ControlSearch, optimize_control
from backend.refinement.validation.crossval import CandidateResult
from backend.engines.scripted import ScriptedEngine
from tests.unit.helpers import LABELS, WordEmbedder, data


class Scripted:
    """A candidate right on `accuracy` of the items (the same items on every run); with None, as
    unsure of every item as the current version."""

    def __init__(self, name, accuracy, cheap=False, pools=False, late=False, seed=7):
        self.name, self.accuracy, self.cheap, self.pools, self.late, self.runs = name, accuracy, cheap, pools, late, 0
        self.seed = seed

    def plans(self, job):
        def run():
            self.runs += 1
            return _right_on(self.name, self.accuracy, job.gold, self.seed)
        return [Plan(self.name, run, cheap=self.cheap, pools=self.pools, items=0 if self.cheap else len(job.gold),
                     late=self.late)]


def _right_on(name, accuracy, gold, seed=7) -> CandidateResult:
    """Right on `accuracy` of the items (the same items for a seed); None: unsure of every item."""
    if accuracy is None:
        return CandidateResult(name, ControlRecipe(), np.full((len(gold), 2), 0.5), gold)
    right = np.random.default_rng(seed).random(len(gold)) < accuracy
    pred = np.where(right, gold, 1 - gold)
    probs = np.full((len(pred), 2), 0.2)
    probs[np.arange(len(pred)), pred] = 0.8
    return CandidateResult(name, ControlRecipe(PromptVersion(name=name)), probs, gold)


def _search(*candidates, n=120, current=ControlRecipe()):
    control = parse_label_config(Dataset("t", LABELS, (), ()).label_config()).controls[0]
    service = LabelingService(ScriptedEngine(), embedder=WordEmbedder())
    texts, gold = data(n)
    return ControlSearch(service, control, texts, gold, current, folds=5, shots=0, alpha=0.05,
                         deadline=time.monotonic() + 600, candidates=candidates)


def test_the_first_stage_runs_the_cheap_plans_alone_and_decides_against_the_current_version():
    cheap, llm = Scripted("cheap", 0.8, cheap=True), Scripted("llm", 0.97)
    search = _search(cheap, llm)
    first = search.first_stage()
    assert (cheap.runs, llm.runs) == (1, 0)
    assert first.accepted and first.best.name == "cheap" and first.p_value < 0.05
    assert [row["name"] for row in first.table] == ["current", "cheap"]


def test_an_llm_candidate_replaces_the_first_choice_only_if_significantly_better_than_it():
    cheap, great = Scripted("cheap", 0.8, cheap=True), Scripted("great", 0.99)
    search = _search(cheap, great)
    first = search.first_stage()
    final = search.second_stage()
    assert final.accepted and final.best.name == "great" and great.runs == 1
    rows = {row["name"]: row for row in final.table}
    assert rows["great"]["judged_against"] == "cheap" and "judged_against" not in rows["cheap"]
    assert final.p_value == rows["great"]["p_vs_current"] < 0.05  # its p against the first choice
    assert final.b > final.c  # McNemar against the current version

    cheap, alike = Scripted("cheap", 0.8, cheap=True), Scripted("alike", 0.8)
    search = _search(cheap, alike)
    first = search.first_stage()
    final = search.second_stage()
    assert final.accepted and final.best.name == "cheap" and final.p_value == first.p_value
    assert {row["name"] for row in final.table} == {"current", "cheap", "alike"}
    assert final.refit is None  # a version was chosen: nothing to refresh


def test_when_the_first_stage_keeps_the_current_version_every_candidate_is_judged_against_it():
    poor, llm = Scripted("poor", None, cheap=True), Scripted("llm", 0.9)
    search = _search(poor, llm)
    assert not search.first_stage().accepted
    final = search.second_stage()
    assert final.accepted and final.best.name == "llm"
    assert not any("judged_against" in row for row in final.table)
    # the same outcome as deciding the whole job at once
    whole = optimize_control(search.job.service, search.control, *data(120), ControlRecipe(), folds=5, shots=0,
                             alpha=0.05, deadline=time.monotonic() + 600,
                             candidates=(Scripted("poor", None, cheap=True), Scripted("llm", 0.9)))
    assert (whole.best.name, whole.p_value) == (final.best.name, final.p_value)


class Pooling(Scripted):
    """A head that pools with the best LLM candidate so far: its result is named after it."""

    def plans(self, job):
        def run():
            self.runs += 1
            return CandidateResult(f"{job.best_llm().name}+head", ControlRecipe(),
                                   np.full((len(job.gold), 2), 0.5), job.gold)
        return [Plan("head", run, cheap=True, pools=True)]


def test_a_cheap_plan_that_pools_runs_again_on_the_llm_candidates_and_a_repeated_result_counts_once():
    head = Pooling("head", None)
    search = _search(Scripted("llm", 0.8), head)
    assert [row["name"] for row in search.first_stage().table] == ["current", "current+head"]
    final = search.second_stage()
    assert head.runs == 2
    assert [row["name"] for row in final.table] == ["current", "current+head", "llm", "llm+head"]

    head = Pooling("head", None)
    search = _search(Scripted("poor", None), head)  # no LLM candidate beats the current version
    search.first_stage()
    assert [row["name"] for row in search.second_stage().table] == ["current", "current+head", "poor"]


def test_a_late_plan_runs_in_the_tuned_stage_alone_is_judged_against_the_current_version_and_must_outscore_the_choice():
    cheap, late = Scripted("cheap", 0.8, cheap=True), Scripted("late", 0.99, late=True)
    search = _search(cheap, late)
    search.first_stage()
    second = search.second_stage()
    assert late.runs == 0 and second.best.name == "cheap"
    tuned = search.tuned_stage(time.monotonic() + 600)
    assert late.runs == 1 and tuned.accepted and tuned.best.name == "late"
    assert [row["name"] for row in tuned.table] == ["late"]
    assert tuned.table[0]["judged_against"] == "current" and tuned.table[0]["compared_with"] == "cheap"


def test_a_late_plan_no_better_than_the_jobs_choice_is_not_accepted_and_none_without_one():
    cheap, late = Scripted("cheap", 0.8, cheap=True), Scripted("late", 0.8, late=True)
    search = _search(cheap, late)
    search.second_stage()
    tuned = search.tuned_stage(time.monotonic() + 600)
    assert not tuned.accepted and tuned.best.name == "cheap"
    assert _search(Scripted("cheap", 0.8, cheap=True)).tuned_stage(time.monotonic() + 600) is None


def test_after_a_refresh_a_late_plan_replaces_the_refit_only_if_it_outscores_it():
    """No choice, the current recipe refit shipped: a late plan significantly better than the
    current version but not than the refit stays out; one that outscores the refit ships."""
    for late_accuracy, accepted in ((0.8, False), (0.9, True)):
        late = Scripted("late", late_accuracy, late=True, seed=5)  # right where the refit is, and more
        search = _search(Scripted("poor", None, cheap=True), late)
        assert not search.second_stage().accepted
        refit = _right_on("current-refit", 0.85, search.job.gold, seed=5)
        tuned = search.tuned_stage(time.monotonic() + 600, refit)
        row = tuned.table[0]
        assert row["p_vs_current"] < 0.05 and row["compared_with"] == "current-refit", row
        assert tuned.accepted is accepted and tuned.best.name == ("late" if accepted else "current-refit")


def test_a_late_plan_refreshes_a_current_version_on_a_tuned_body_when_due_and_no_worse():
    """The current version reads a fine-tuned body (nothing else can refit it) and its refresh is
    due: a late plan a little better (not significantly) replaces it, as a refresh would; not when
    the refresh is not due, nor when it is worse."""
    for late_accuracy, due, accepted in ((0.87, True, True), (0.87, False, False), (0.8, True, False)):
        late = Scripted("late", late_accuracy, late=True, seed=5)  # right where the current is, and more
        search = _search(Scripted("poor", None, cheap=True), late)
        search.job.judged_current = _right_on("current", 0.85, search.job.gold, seed=5)
        assert not search.second_stage().accepted
        tuned = search.tuned_stage(time.monotonic() + 600, refresh_tuned=due)
        row = tuned.table[0]
        assert row["p_vs_current"] > 0.05, row  # not significantly better
        assert tuned.accepted is accepted and tuned.best.name == ("late" if accepted else "current")
        assert row.get("no_worse") is (accepted if due else None) and tuned.refreshes_tuned is accepted


def test_the_jobs_choice_from_many_alike_candidates_loses_its_luck_before_a_late_plan_is_compared_with_it():
    """Twelve cheap candidates equally good (0.8) and one late plan a little better (0.83): the
    best cheap one scores above the late plan on these items by luck alone; net of each family's
    selection optimism the late plan wins."""
    alike = [Scripted(f"cheap{i}", 0.8, cheap=True, seed=i) for i in range(12)]
    late = Scripted("late", 0.83, late=True, seed=99)
    search = _search(*alike, late, n=150)
    second = search.second_stage()
    tuned = search.tuned_stage(time.monotonic() + 600)
    row = tuned.table[0]
    assert second.accepted and row["macro_f1"] < second.best.metrics["macro_f1"]  # the lucky one
    assert row["compared_optimism"] > row["optimism"] + 0.01
    assert tuned.accepted and tuned.best.name == "late"


def test_a_late_plan_past_its_deadline_is_skipped_and_the_stage_says_why():
    late = Scripted("late", 0.99, late=True)
    search = _search(Scripted("cheap", 0.8, cheap=True), late)
    tuned = search.tuned_stage(time.monotonic() - 1)
    assert late.runs == 0 and not tuned.accepted and tuned.skipped == ["late: time budget spent"]


def test_a_first_fit_replaces_a_version_that_learnt_from_no_labels_on_being_no_worse():
    """Version 0 (or a template's wording, batch-calibrated) learnt nothing from labels: a cheap
    candidate a little better, not significantly, replaces it; not a version with a calibration
    fitted on labels, and not a worse candidate."""
    batch = Calibrator((0.1, -0.1), method=BATCH)  # set without labels, on the project's texts
    fitted = Calibrator((0.1, -0.1), method="fitted")
    for current, accuracy, accepted in ((ControlRecipe(), 0.87, True), (ControlRecipe(calibrator=batch), 0.87, True),
                                        (ControlRecipe(calibrator=fitted), 0.87, False), (ControlRecipe(), 0.8, False)):
        search = _search(Scripted("cheap", accuracy, cheap=True, seed=5), current=current)
        search.job.judged_current = _right_on("current", 0.85, search.job.gold, seed=5)
        first = search.first_stage()
        row = first.table[1]
        assert row["p_vs_current"] > 0.05, row  # never significantly better
        assert (first.accepted, first.first_fit) == (accepted, accepted), (current, accuracy)
        assert first.best.name == "cheap" and first.summary().get("first_fit") is (accepted or None)
        final = search.second_stage()
        assert (final.accepted, final.first_fit) == (accepted, accepted)


def test_after_a_first_fit_the_second_stage_decides_every_candidate_against_version_0_again():
    """A first fit is let in without a significant gain: the second stage decides as if the
    first stage had published nothing. An LLM candidate significantly better than version 0,
    but not than that provisional choice, replaces it; so does one with a higher F1 that is
    no worse than version 0 (a first fit in turn); a poor one does not, and the best of the
    whole family is the first fit again."""
    for other, replaces, significant in ((Scripted("llm", 0.93, seed=5), True, True),
                                         (Scripted("higher", 0.9, seed=11), True, False),
                                         (Scripted("poor", None), False, False)):
        search = _search(Scripted("cheap", 0.87, cheap=True, seed=9), other)
        search.job.judged_current = _right_on("current", 0.85, search.job.gold, seed=5)
        first = search.first_stage()
        assert first.accepted and first.first_fit and first.best.name == "cheap"
        # the other candidate's answers are not significantly better than the first fit's
        assert _right_on(other.name, other.accuracy, search.job.gold, other.seed).f1_gain(first.best)[1] > 0.05
        final = search.second_stage()
        rows = {row["name"]: row for row in final.table}
        assert final.accepted and final.best.name == (other.name if replaces else "cheap"), other.name
        assert final.first_fit is not significant
        assert "judged_against" not in rows[other.name]  # against version 0, as the whole family


def test_a_due_refresh_ships_the_best_candidate_or_refit_that_is_no_worse_than_the_current_version():
    """A version fitted on labels (its calibration), no candidate significantly better: what its
    refresh would ship is the best of the candidates and the current recipe's refit that are no
    worse than it (lower log-loss, F1 not significantly lower), named as it is; nothing when
    none is. The second stage's decision carries the same refresh."""
    fitted = Calibrator((0.1, -0.1), method="fitted")
    for accuracy, refresh in ((0.87, "cheap"), (0.8, None)):
        search = _search(Scripted("cheap", accuracy, cheap=True, seed=5), Scripted("poor", None, cheap=True),
                         current=ControlRecipe(calibrator=fitted))
        search.job.judged_current = _right_on("current", 0.85, search.job.gold, seed=5)
        first = search.first_stage()
        assert not first.accepted and first.table[1]["p_vs_current"] > 0.05
        assert getattr(first.refresh, "name", None) == refresh and first.summary().get("refresh") == refresh
        assert search.second_stage().refresh is first.refresh
    cur, cheap = first.current, _right_on("cheap", 0.87, search.job.gold, seed=5)
    for refit_accuracy, chosen in ((0.9, "current-refit"), (0.86, "cheap")):  # the refit competes on F1
        refit = _right_on("current-refit", refit_accuracy, search.job.gold, seed=5)
        refit.metrics["no_worse"] = True
        assert search._refresh(cur, [cheap], refit).name == chosen
    # a version on a fine-tuned body (no refit: the cheap stage cannot refit its body) is left
    # to the tuned stage's refresh
    search.job.current = ControlRecipe(head=HeadWeights(((0.0,), (0.0,)), (0.0, 0.0), 0.0, embedder="tuned:abc"))
    assert search._refresh(cur, [cheap], None) is None


def test_a_late_plan_is_compared_with_a_refresh_chosen_among_the_cheap_candidates_net_of_their_optimism():
    """A refresh that is the best of many alike cheap candidates owes part of its score to luck:
    the tuned stage lowers it by the family's selection optimism, as it does the job's choice."""
    fitted = Calibrator((0.1, -0.1), method="fitted")
    alike = [Scripted(f"cheap{i}", 0.87, cheap=True, seed=i) for i in range(10)]
    search = _search(*alike, Scripted("late", 0.88, late=True, seed=99), n=150,
                     current=ControlRecipe(calibrator=fitted))
    search.job.judged_current = _right_on("current", 0.85, search.job.gold, seed=5)
    first = search.first_stage()
    assert not first.accepted and first.refresh.name.startswith("cheap")
    tuned = search.tuned_stage(time.monotonic() + 600, first.refresh)
    row = tuned.table[0]
    assert row["compared_with"] == first.refresh.name and row["compared_optimism"] > 0.005, row
