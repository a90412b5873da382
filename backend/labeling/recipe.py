"""How one <Choices> control is predicted in a model version: prompt, calibration, optional head,
and for multiple choice the decision threshold."""
from __future__ import annotations

from dataclasses import dataclass, replace

from .calibration import Calibrator
from .head import HeadWeights
from .label_config import ChoiceControl
from .prompt import Demo, PromptVersion, annotator_instructions
from .reasoning import Reasoning


@dataclass(frozen=True)
class ControlRecipe:
    prompt: PromptVersion = PromptVersion()
    calibrator: Calibrator | None = None  # None: contextual calibration at serving time
    head: HeadWeights | None = None
    threshold: float | None = None  # multiple choice: P(applies) from which a label is chosen; None = 0.5

    def instructed(self, control: ChoiceControl, typed: str) -> "ControlRecipe":
        """This recipe's prompt with an annotator's typed instruction in place of its own, with
        the content-free calibration of that prompt: what the version fitted on ground truth
        (calibration, head, threshold) was fitted to the old instructions' answers."""
        prompt = replace(self.prompt, name=f"{self.prompt.name}+typed", instructions=annotator_instructions(control, typed))
        return ControlRecipe(prompt)

    def with_evidence(self, evidence: tuple[tuple[str, str], ...]) -> "ControlRecipe":
        """This recipe with the annotator's other answers shown after the text (interactive).

        Its calibrator, head and threshold are kept: the service moves a fitted calibrator by
        the shift the evidence lines give content-free inputs (LabelingService.calibrated). The
        head still sees the text only (its embeddings were trained on texts alone), pooled with
        the LLM's answer that sees the evidence; a head that answers alone runs no LLM pass, so
        it gets no evidence at all. Nor does a head that reads the LLM's state at the answer:
        it learnt from states of prompts without evidence lines, which move the state."""
        if not evidence or (self.head is not None and (not self.head.reads_llm or self.head.reads_state)):
            return self
        return replace(self, prompt=replace(self.prompt, evidence=evidence))

    def to_dict(self) -> dict:
        return {
            "prompt": self.prompt.to_dict(),
            "calibrator": self.calibrator.to_dict() if self.calibrator else None,
            "head": self.head.to_dict() if self.head else None,
            **({"threshold": self.threshold} if self.threshold is not None else {}),
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
        threshold = float(data["threshold"]) if data.get("threshold") is not None else None
        return cls(prompt=prompt, calibrator=calibrator, head=head, threshold=threshold)


def _temperature(value) -> float | tuple[float, ...]:
    """One temperature, or one per label (a multi-choice calibrator) kept hashable."""
    return tuple(float(v) for v in value) if isinstance(value, list) else float(value)
