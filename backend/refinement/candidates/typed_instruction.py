"""Instructions annotators typed in the editor while labelling (the config's instruction
<TextArea>), each as the prompt's instructions: an annotator who had to tell the model what they
meant often wrote down what the default instructions miss. Judged like any other candidate, as
served (content-free calibrated) and with a calibration fitted on ground truth."""
from __future__ import annotations

from collections import Counter
from typing import Sequence

from ...labeling.prompt import PromptVersion, annotator_instructions
from ...labeling.recipe import ControlRecipe
from ..validation.crossval import CandidateResult, evaluate_fitted_calibration, evaluate_fixed, logits_matrix
from .contract import ControlJob, Plan

# Each costs one pass over the items, like a few-shot prompt: the most often typed ones only.
MAX_TYPED = 2


def most_typed(instructions: Sequence[str], limit: int = MAX_TYPED) -> tuple[str, ...]:
    """The distinct non-empty instructions, most often typed first (ties: the first listed)."""
    return tuple(text for text, _ in Counter(i for i in instructions if i).most_common(limit))


def evaluate_typed(job: ControlJob, name: str, typed: str) -> list[CandidateResult]:
    prompt = PromptVersion(name=name, instructions=annotator_instructions(job.control, typed))
    logits = logits_matrix(job.service, job.control, prompt, job.texts, job.deadline)
    served = evaluate_fixed(name, ControlRecipe(prompt), job.service, job.control, job.texts, job.gold, logits)
    fitted = evaluate_fitted_calibration(f"{name}+calibrated", prompt, logits, job.gold, job.folds,
                                         job.service.calibrator(job.control, prompt), kind=job.kind)
    return [served, fitted]


class TypedInstruction:
    def plans(self, job: ControlJob) -> list[Plan]:
        plans = []
        for k, typed in enumerate(job.typed, start=1):
            if annotator_instructions(job.control, typed) == job.current.prompt.instructions:
                continue  # the current version already serves it
            plans.append(Plan(f"typed-{k}", lambda k=k, typed=typed: evaluate_typed(job, f"typed-{k}", typed),
                              items=len(job.texts)))
        return plans
