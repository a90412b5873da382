"""The request path composed: tasks → texts → prompt → scoring → calibration → LS predictions."""
from __future__ import annotations

import logging
import threading
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np

from ..engines.base import LabelEngine
from ..errors import BadRequest
from .calibration import Calibrator, raw_probabilities
from .label_config import ChoiceControl, LabelTask
from .prediction import ControlPrediction, decide, to_ls_prediction
from .head import Embedder
from .recipe import ControlRecipe
from .prompt import CONTENT_FREE_TEXTS, PromptVersion, clean_text, render

if TYPE_CHECKING:
    from ..refinement.versions import ModelVersion
from .scoring import fit_text, label_logits

log = logging.getLogger(__name__)


@dataclass
class TaskTexts:
    """The cleaned text of each field one task needs, plus warnings to return with its prediction."""

    texts: dict[str, str]
    warnings: list[str] = field(default_factory=list)


def extract_texts(tasks: object, label_task: LabelTask, max_chars: int) -> list[TaskTexts]:
    """Validate the `tasks` of a /predict body; every error names the offending field."""
    if not isinstance(tasks, list):
        raise BadRequest("`tasks` must be a list of task objects", field="tasks")
    if not tasks:
        raise BadRequest("`tasks` is empty", field="tasks")
    out = []
    for i, task in enumerate(tasks):
        if not isinstance(task, dict) or not isinstance(task.get("data"), dict):
            raise BadRequest(f"tasks[{i}] must be an object with a `data` object", field=f"tasks[{i}].data")
        item = TaskTexts(texts={})
        for name in label_task.fields:
            where = f"tasks[{i}].data.{name}"
            value = task["data"].get(name)
            if value is None:
                raise BadRequest(f"{where} is missing (the label config reads ${name})", field=where)
            if not isinstance(value, (str, int, float)) or isinstance(value, bool):
                raise BadRequest(f"{where} must be a string", field=where)
            text = clean_text(value)
            if not text:
                raise BadRequest(f"{where} is empty", field=where)
            if len(text) > max_chars:
                item.warnings.append(f"{where} truncated from {len(text)} to {max_chars} characters")
                text = text[:max_chars]
            item.texts[name] = text
        out.append(item)
    return out


class LabelingService:
    """Holds the engine and the content-free calibrators (computed once per prompt and label set)."""

    def __init__(self, engine: LabelEngine, *, calibration: str = "contextual", embedder: Embedder | None = None):
        self.engine = engine
        self.calibration = calibration
        self.embedder = embedder or Embedder()
        self._calibrators: dict[tuple, Calibrator] = {}
        self._lock = threading.Lock()

    def calibrator(self, control: ChoiceControl, prompt: PromptVersion) -> Calibrator:
        """Contextual (content-free) calibration of `prompt` for `control`, or identity if disabled."""
        if self.calibration == "none":
            return Calibrator.identity(len(control.labels))
        key = (control, prompt)
        with self._lock:
            cached = self._calibrators.get(key)
        if cached is None:
            cf = np.stack([self.logits(control, prompt, t)[0] for t in CONTENT_FREE_TEXTS])
            cached = Calibrator.contextual(cf, control.multiple)
            with self._lock:
                self._calibrators[key] = cached
        return cached

    def logits(self, control: ChoiceControl, prompt: PromptVersion, text: str) -> tuple[np.ndarray, bool]:
        """Uncalibrated label logits of one text, and whether the text had to be cut to fit."""
        rendered = render(control, prompt)
        fitted = fit_text(self.engine, rendered, text)
        return label_logits(self.engine, rendered, control, fitted.text), fitted.truncated

    def predict_control(
        self, control: ChoiceControl, recipe: ControlRecipe, texts: list[str]
    ) -> list[tuple[ControlPrediction, bool]]:
        """Predictions for one control over many texts; tasks run back to back so the prefix stays cached.

        A recipe without a calibrator gets content-free calibration of its prompt; one with a head
        pools the LLM's distribution with the head's."""
        calibrator = recipe.calibrator or self.calibrator(control, recipe.prompt)
        scored = [self.logits(control, recipe.prompt, text) for text in texts]
        probs = [calibrator.apply(logits, control.multiple) for logits, _ in scored]
        if recipe.head is not None and not control.multiple:
            pooled = recipe.head.combine(np.stack(probs), self.embedder.encode(texts))
            probs = list(pooled)
        return [
            (decide(control, p, raw_probabilities(logits, control.multiple)), truncated)
            for p, (logits, truncated) in zip(probs, scored)
        ]

    def predict(self, items: list[TaskTexts], label_task: LabelTask, version: "ModelVersion") -> list[dict]:
        per_task: list[list[ControlPrediction]] = [[] for _ in items]
        warnings = [list(item.warnings) + label_task.skipped_messages() for item in items]
        for control in label_task.controls:
            texts = [item.texts[control.field] for item in items]
            for i, (pred, truncated) in enumerate(self.predict_control(control, version.recipe(control.name), texts)):
                per_task[i].append(pred)
                if truncated:
                    warnings[i].append(f"data.{control.field} truncated to fit the model's context")
        return [to_ls_prediction(p, version.label, w) for p, w in zip(per_task, warnings)]
