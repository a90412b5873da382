"""A current version whose head reads a fine-tuned body that is no longer stored.

Its `/predict` answers 503 `tuned_body_missing` and no job could judge it, so every job would
fail until someone rolled back. Instead the job judges the version without that head (its
prompt and calibration, which need nothing stored), so that the cheap stage's heads can
replace it within a minute; publishes that headless recipe if nothing better wins, so that
predictions resume; and makes the fine-tuned stage due again, so that a body is tuned anew.
"""
from __future__ import annotations

from dataclasses import dataclass, field, replace

from ..labeling.recipe import ControlRecipe
from ..store.tuned_bodies import TunedBodies
from .selection.current_refit import tuned_bodies_read

NAME = "without-lost-head"


@dataclass(frozen=True)
class HeadDropped:
    """A control's current recipe without the head whose body was lost; published as a refresh is
    (its name and metrics name it in the version's kind and metrics)."""
    recipe: ControlRecipe
    body: str
    name: str = NAME
    metrics: dict = field(default_factory=dict)

    def __post_init__(self):
        self.metrics.setdefault("lost_body", self.body)


def lost_heads(controls: dict[str, ControlRecipe], bodies: TunedBodies) -> dict[str, HeadDropped]:
    """Per control whose head reads a fine-tuned body the store no longer has: its recipe without
    that head."""
    return {name: HeadDropped(replace(controls[name], head=None), body)
            for name, body in tuned_bodies_read(controls).items() if not bodies.has(body)}
