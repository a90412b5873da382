"""Instructions annotators typed in the editor while labelling (the config's instruction
<TextArea>), each as the prompt's instructions: an annotator who had to tell the model what they
meant often wrote down what the default instructions miss. Judged like any other candidate, as
served (content-free calibrated) and with a calibration fitted on ground truth."""
from __future__ import annotations

from typing import Sequence

from ...labeling.prompt import PromptVersion, annotator_instructions
from ...labeling.recipe import ControlRecipe
from ..validation.crossval import CandidateResult, evaluate_fitted_calibration, evaluate_fixed, logits_matrix
from .contract import ControlJob, Plan

# Each costs one pass over the items, like a few-shot prompt: the most promising ones only.
MAX_TYPED = 2


def most_typed(instructions: Sequence[str], limit: int = MAX_TYPED,
               agreed: Sequence[bool | None] = ()) -> tuple[str, ...]:
    """The distinct non-empty instructions most likely to help, at most `limit`.

    `agreed[i]` says whether the answer the editor gave under `instructions[i]` was the label the
    annotator then chose (GoldItem.instruction_effect; None when unknown: typed before effects
    were kept, or the answer had expired). An instruction that often led the model to the
    annotator's label is tried first: ranked by its agreement rate with Laplace's rule of succession,
    (agreed + 1) / (known + 2), so that one lucky answer does not outrank four agreements of five and
    an instruction without known effects sits at 1/2; then by how often it was typed, then the first
    listed (the job lists the newest first). Without any effect known this is plain frequency.
    Which one wins is still the selection's call: this only decides which are judged."""
    agreed = list(agreed) + [None] * (len(instructions) - len(agreed))
    typed: dict[str, list[int]] = {}  # instruction → [times typed, answers known, answers agreed]
    for text, ok in zip(instructions, agreed):
        if not text:
            continue
        counts = typed.setdefault(text, [0, 0, 0])
        counts[0] += 1
        if ok is not None:
            counts[1] += 1
            counts[2] += bool(ok)
    def rank(text: str) -> tuple[float, int]:
        times, known, agreed_ = typed[text]
        return -(agreed_ + 1) / (known + 2), -times

    order = sorted(typed, key=rank)  # stable: ties keep the first listed first
    return tuple(order[:limit])


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
