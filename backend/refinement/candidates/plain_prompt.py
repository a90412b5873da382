"""The built-in prompt with no demonstrations and the default instructions, content-free
calibrated: the way back when a version's demonstrations or instructions stopped paying."""
from __future__ import annotations

from ...labeling.recipe import ControlRecipe
from ..validation.crossval import evaluate_fixed
from .contract import ControlJob, Plan


class PlainPrompt:
    def plans(self, job: ControlJob) -> list[Plan]:
        if not (job.current.prompt.demos or job.current.prompt.instructions):
            return []  # the current version is the plain prompt
        return [Plan("base", lambda: evaluate_fixed("base", ControlRecipe(job.base), job.service, job.control,
                                                    job.texts, job.gold, deadline=job.deadline),
                     items=len(job.texts))]
