"""How one <Choices> control is predicted in a model version: prompt, calibration, optional head."""
from __future__ import annotations

from dataclasses import dataclass

from .calibration import Calibrator
from .head import HeadWeights
from .prompt import Demo, PromptVersion
from .reasoning import Reasoning


@dataclass(frozen=True)
class ControlRecipe:
    prompt: PromptVersion = PromptVersion()
    calibrator: Calibrator | None = None  # None: contextual calibration at serving time
    head: HeadWeights | None = None

    def to_dict(self) -> dict:
        return {
            "prompt": self.prompt.to_dict(),
            "calibrator": self.calibrator.to_dict() if self.calibrator else None,
            "head": self.head.to_dict() if self.head else None,
        }

    @classmethod
    def from_dict(cls, data: dict) -> "ControlRecipe":
        p = data.get("prompt") or {}
        prompt = PromptVersion(
            name=p.get("name", "v0"),
            instructions=p.get("instructions"),
            demos=tuple(Demo(d["text"], tuple(d["labels"])) for d in p.get("demos", [])),
            pool=tuple(Demo(d["text"], tuple(d["labels"])) for d in p.get("pool", [])),
            nearest=int(p.get("nearest", 0)),
            reasoning=Reasoning.from_dict(p["reasoning"]) if p.get("reasoning") else None,
        )
        c = data.get("calibrator")
        calibrator = Calibrator(tuple(c["bias"]), _temperature(c.get("temperature", 1.0)), c.get("method", "fitted")) if c else None
        head = HeadWeights.from_dict(data["head"]) if data.get("head") else None
        return cls(prompt=prompt, calibrator=calibrator, head=head)


def _temperature(value) -> float | tuple[float, ...]:
    """One temperature, or one per label (a multi-choice calibrator) kept hashable."""
    return tuple(float(v) for v in value) if isinstance(value, list) else float(value)
