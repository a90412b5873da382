"""The job's time budget: plans stop between folds when the rest would pass the deadline."""
import pytest

from backend.refinement.selection.optimizer import Plan, run_plans
from backend.refinement.validation.crossval import OverBudget, pace_budget


class Clock:
    def __init__(self):
        self.now = 0.0

    def __call__(self):
        return self.now


def test_a_plan_stops_after_the_chunk_that_shows_the_rest_would_overrun():
    clock = Clock()
    after = pace_budget(deadline=100.0, total=5, unit="folds", clock=clock)
    clock.now = 15.0
    after(1)  # 15 s a fold: 4 more end at 75 s, inside the budget
    clock.now = 42.0
    with pytest.raises(OverBudget, match="2/5 folds"):
        after(2)  # 21 s a fold now: 3 more would end at 105 s


def test_no_deadline_nothing_done_yet_and_the_last_chunk_never_stop_a_plan():
    clock = Clock()
    unlimited = pace_budget(deadline=None, total=2, clock=clock)
    clock.now = 1e9
    unlimited(1)
    started = pace_budget(deadline=10.0, total=3, clock=clock)
    clock.now += 50.0
    started(0)  # no pace known yet
    started(3)  # the work is done: keep it


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


# --- the pace of one LLM pass (paced_logits): the current version's pass, and the other plans ---

import numpy as np  # noqa: E402

from backend.engines.scripted import ScriptedEngine  # noqa: E402
from backend.labeling.label_config import parse_label_config  # noqa: E402
from backend.labeling.prompt import PromptVersion  # noqa: E402
from backend.labeling.service import LabelingService  # noqa: E402
from backend.refinement.validation.crossval import PACE_CHUNK, logits_matrix, paced_logits  # noqa: E402

CONTROL = parse_label_config(
    '<View><Text name="text" value="$text"/><Choices name="label" toName="text">'
    '<Choice value="spam"/><Choice value="ham"/></Choices></View>').controls[0]
TEXTS = [f"message {i} " + ("spam spam" if i % 3 == 0 else "ham") for i in range(30)]  # oldest first
PROMPT = PromptVersion(name="v0")


class SecondPerText(ScriptedEngine):
    """Scoring one text takes a second of the test's clock."""

    def __init__(self, clock):
        super().__init__()
        self.clock = clock

    def score(self, prefix, item, branches):
        self.clock.now += 1.0
        return super().score(prefix, item, branches)


def test_the_current_pass_keeps_the_newest_items_it_scored_before_its_time_was_up():
    clock = Clock()
    engine = SecondPerText(clock)
    logits, used, pace = paced_logits(LabelingService(engine), CONTROL, PROMPT, TEXTS, stop_at=12.0, partial=True,
                                      clock=clock)
    # a chunk ends at 8 s (go on), the next at 16 s (past 12 s: stop)
    assert used.tolist() == [False] * (30 - 2 * PACE_CHUNK) + [True] * (2 * PACE_CHUNK)
    assert len(engine.calls) == 2 * PACE_CHUNK and pace == 1.0
    everything = logits_matrix(LabelingService(ScriptedEngine()), CONTROL, PROMPT, TEXTS)
    assert np.array_equal(logits[used], everything[used])


def test_another_pass_stops_as_soon_as_its_pace_says_it_would_end_after_the_deadline():
    clock = Clock()
    engine = SecondPerText(clock)
    with pytest.raises(OverBudget, match=f"{PACE_CHUNK}/30 items"):
        paced_logits(LabelingService(engine), CONTROL, PROMPT, TEXTS, 20.0, partial=False, clock=clock)  # 30 s in all
    assert len(engine.calls) == PACE_CHUNK

    clock.now = 0.0
    logits, scored, _ = paced_logits(LabelingService(SecondPerText(clock)), CONTROL, PROMPT, TEXTS, 31.0,
                                     partial=False, clock=clock)
    assert scored.all() and logits.shape == (30, 2)


def test_each_control_left_gets_an_equal_share_of_the_job_time_left():
    from backend.refinement.job import control_deadline

    assert control_deadline(now=0.0, deadline=600.0, controls_left=2) == 300.0
    # the first control used only 100 s of its 300: the last one gets all that is left
    assert control_deadline(now=100.0, deadline=600.0, controls_left=1) == 600.0
    # the first one overran: the next still has its cheap plans, with no time for LLM passes
    assert control_deadline(now=700.0, deadline=600.0, controls_left=1) == 700.0
