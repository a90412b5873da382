"""A model version: what /predict serves for one label config in one project.

A version is a recipe per control (prompt, calibration, head), and a span prompt per <Labels>
control. The version registry
(store/versions.py) numbers, stores and rolls back versions; this module says what one holds and
its JSON form.
"""
from __future__ import annotations

from dataclasses import dataclass, field

from .recipe import ControlRecipe
from .spans import SpanPrompt


@dataclass(frozen=True)
class ModelVersion:
    label: str
    number: int = 0
    lineage: str = ""
    controls: dict[str, ControlRecipe] = field(default_factory=dict)
    kind: str = "base"
    metrics: dict = field(default_factory=dict)
    gt_count: int = 0
    parent: str | None = None
    created_at: float = 0.0
    trained_on: tuple[int, ...] = ()  # task ids whose labels built it: never used to judge it again
    spans: dict[str, SpanPrompt] = field(default_factory=dict)  # per <Labels> control

    def recipe(self, control_name: str) -> ControlRecipe:
        return self.controls.get(control_name) or ControlRecipe()

    def span_prompt(self, control_name: str) -> SpanPrompt:
        return self.spans.get(control_name) or SpanPrompt()

    def to_dict(self) -> dict:
        return {
            "model_version": self.label,
            "number": self.number,
            "lineage": self.lineage,
            "kind": self.kind,
            "controls": {name: r.to_dict() for name, r in self.controls.items()},
            "metrics": self.metrics,
            "gt_count": self.gt_count,
            "parent": self.parent,
            "created_at": self.created_at,
            "trained_on": list(self.trained_on),
            "spans": {name: p.to_dict() for name, p in self.spans.items()},
        }

    @classmethod
    def from_dict(cls, data: dict) -> "ModelVersion":
        return cls(
            label=data["model_version"],
            number=int(data["number"]),
            lineage=data["lineage"],
            controls={k: ControlRecipe.from_dict(v) for k, v in (data.get("controls") or {}).items()},
            kind=data.get("kind", "refined"),
            metrics=data.get("metrics") or {},
            gt_count=int(data.get("gt_count") or 0),
            parent=data.get("parent"),
            created_at=float(data.get("created_at") or 0.0),
            trained_on=tuple(int(t) for t in data.get("trained_on") or ()),
            spans={k: SpanPrompt.from_dict(v) for k, v in (data.get("spans") or {}).items()},
        )
