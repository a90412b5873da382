"""The fine-tuned head's budget: its pace is trusted after a few optimizer steps, and the stage
stops as soon as the rest of its fine-tunings would end after the deadline (pure logic, a
scripted clock)."""
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
