"""The fine-tuned head's budget: its pace is trusted after a few optimizer steps, and the stage
stops as soon as the rest of its fine-tunings would end after the deadline even at the pace so
far less its uncertainty (pure logic, a scripted clock)."""
import pytest

from backend.refinement.candidates.tuned_head import PROBE_STEPS, StepPace
from backend.refinement.validation.crossval import OverBudget


class Clock:
    def __init__(self):
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_a_pace_that_ends_in_time_never_stops_the_stage():
    clock = Clock()
    pace = StepPace(total=600, deadline=100.0 + 600 * 0.5 + 1, clock=clock)
    for _ in range(600):
        clock.now += 0.5
        pace.step()
    assert pace.done == 600


def test_a_pace_too_slow_for_the_deadline_stops_the_stage_after_the_probe_steps():
    clock = Clock()
    pace = StepPace(total=600, deadline=100.0 + 600 * 0.5, clock=clock)
    for _ in range(PROBE_STEPS - 1):
        clock.now += 1.0  # twice as slow as the budget allows
        pace.step()
    clock.now += 1.0
    with pytest.raises(OverBudget, match=f"{600 - PROBE_STEPS} more fine-tuning steps at 1.00 s each"):
        pace.step()


def test_a_few_slow_steps_among_the_first_do_not_stop_a_stage_that_fits():
    # steps vary with the lengths of their batch's texts: two slow ones put the mean of the first
    # 16 at 0.725 s, late for a budget of 0.5 s a step, while the whole stage averages 0.41 s
    clock = Clock()
    pace = StepPace(total=600, deadline=100.0 + 600 * 0.5, clock=clock)
    for i in range(600):
        clock.now += 3.0 if i in (1, 5) else 0.4
        pace.step()
    assert pace.done == 600


def test_a_noisy_pace_that_does_not_fit_still_stops_the_stage_by_its_deadline():
    clock = Clock()
    pace = StepPace(total=600, deadline=100.0 + 600 * 0.5, clock=clock)
    with pytest.raises(OverBudget):
        for i in range(600):
            clock.now += 1.05 if i % 2 else 0.05  # 0.55 s a step on average: 30 s too slow in all
            pace.step()
    assert PROBE_STEPS < pace.done < 600  # the margin let it go on until the pace was clear
    assert clock.now <= 100.0 + 600 * 0.5
