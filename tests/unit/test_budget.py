"""The job's time budget: plans stop between folds when the rest would pass the deadline."""
import pytest

from backend.refinement.evaluate import OverBudget, fold_budget
from backend.refinement.optimizer import Plan, run_plans


class Clock:
    def __init__(self):
        self.now = 0.0

    def __call__(self):
        return self.now


def test_a_plan_stops_after_the_fold_that_shows_the_rest_would_overrun():
    clock = Clock()
    after_fold = fold_budget(deadline=100.0, n_folds=5, clock=clock)
    clock.now = 15.0
    after_fold()  # 15 s a fold: 4 more end at 75 s, inside the budget
    clock.now = 42.0
    with pytest.raises(OverBudget, match="2/5 folds"):
        after_fold()  # 21 s a fold now: 3 more would end at 105 s


def test_no_deadline_and_the_last_fold_never_stop_a_plan():
    clock = Clock()
    unlimited = fold_budget(deadline=None, n_folds=2, clock=clock)
    clock.now = 1e9
    unlimited()
    last = fold_budget(deadline=10.0, n_folds=1, clock=clock)
    clock.now += 50.0
    last()  # the work is done: keep it


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
