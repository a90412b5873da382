"""Which model version serves a project. Until refinement (issue B) publishes versions, every
project is served by version 0: the default instructions, no demonstrations, content-free
calibration. The version string is what Label Studio stores as `model_version`."""
from __future__ import annotations

from dataclasses import dataclass

from ..labeling.label_config import LabelTask
from ..labeling.prompt import PromptVersion


@dataclass(frozen=True)
class ModelVersion:
    label: str  # the model_version string Label Studio sees
    prompt: PromptVersion

    def to_dict(self) -> dict:
        return {"model_version": self.label, "prompt": self.prompt.to_dict()}


class DefaultVersions:
    def __init__(self, engine_id: str):
        self.engine_id = engine_id

    def current(self, project: int | None, label_task: LabelTask | None = None) -> ModelVersion:
        return ModelVersion(label=f"{self.engine_id}.v0", prompt=PromptVersion(name="v0"))

    def history(self, project: int | None) -> list[ModelVersion]:
        return [self.current(project)]
