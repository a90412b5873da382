"""Every candidate of a refinement served on a labelled test split (`candidates --test`): the
cross-validated numbers the selection saw next to what each recipe does on items nobody learnt
from, to check that the rule picks well."""
from __future__ import annotations

import numpy as np

from ..errors import DatasetError
from ..labeling.label_config import ChoiceControl
from ..labeling.service import LabelingService
from ..refinement.validation.crossval import evaluate_fixed, paced_logits
from .datasets import Dataset


def gold_indices(control: ChoiceControl, test: Dataset) -> np.ndarray:
    """The test labels as indices of the control's labels (the two files may order them differently)."""
    unknown = sorted(set(test.labels) - set(control.labels))
    if unknown:
        raise DatasetError(f"test labels not in the ground truth's label set: {unknown[:5]}")
    return np.array([control.labels.index(test.labels[g]) for g in test.gold])


def serve_candidates(service: LabelingService, control: ChoiceControl, decision, test: Dataset) -> list[dict]:
    """One row per candidate (the current version first): its cross-validated macro-F1 and
    log-loss, and accuracy / macro-F1 / ECE served on `test`. One LLM pass per distinct prompt
    (with the states at the answer, where the engine gives them, for a head that reads them)."""
    gold, texts = gold_indices(control, test), list(test.texts)
    embeddings = service.embedder.encode(texts)
    passes: dict = {}
    rows = []
    results = [decision.current, *decision.results]
    if decision.accepted and all(r is not decision.best for r in results):
        results.append(decision.best)  # as it ships: e.g. with a temperature fitted once chosen
    for result in results:
        prompt = result.recipe.prompt
        if prompt not in passes:
            passes[prompt] = paced_logits(service, control, prompt, texts, None, partial=False, states=True)
        scored = passes[prompt]
        served = evaluate_fixed(result.name, result.recipe, service, control, texts, gold, scored.logits, embeddings,
                                states=scored.states)
        chosen = " (chosen)" if result is decision.best and decision.accepted else ""
        rows.append({"name": result.name + chosen, "cv_macro_f1": result.metrics.get("macro_f1"),
                     "cv_log_loss": result.metrics.get("log_loss", ""),
                     **{k: served.metrics[k] for k in ("accuracy", "macro_f1", "ece", "ece_floor")}})
    return rows
