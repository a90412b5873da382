"""`bench --reasoning`: what reason-then-select and self-consistency buy, and what they cost.

Every mode is run on the same items and prompts in one process, one after another: labels scored
directly, after one greedy rationale, and after k sampled rationales. Each row reports accuracy,
macro-F1 and ECE (content-free calibrated, as served) next to seconds per item, and its gain and
cost ratio against the direct mode of the same prompt: the numbers a refinement job's pilot
(refinement/candidates/reasoning_first.py) decides on, at full length.
"""
from __future__ import annotations

import time
from dataclasses import replace

import numpy as np

from ..labeling.label_config import parse_label_config
from ..labeling.prompt import PromptVersion, render
from ..labeling.reasoning import Reasoning
from ..labeling.recipe import ControlRecipe
from ..labeling.service import LabelingService
from ..metrics.single_label import summarize
from .datasets import Dataset
from .run import first_demos

EXAMPLES = 3  # rationales shown per prompt, to read what the model wrote


def reasoning_benchmark(service: LabelingService, dataset: Dataset, demos_from: Dataset, *, shots: int,
                        modes: list[Reasoning]) -> dict:
    control = parse_label_config(dataset.label_config()).controls[0]
    texts, gold = list(dataset.texts), np.array(dataset.gold)
    prompts = [PromptVersion(name="zero-shot")]
    if shots:
        prompts.append(PromptVersion(name=f"{shots}-shot", demos=first_demos(demos_from, shots)))
    rows, examples = [], {}
    for prompt in prompts:
        direct = None
        for mode in [None, *modes]:
            version = replace(prompt, reasoning=mode)
            service.calibrator(control, version)  # content-free calibration is a one-off, not per item
            t0 = time.perf_counter()
            preds = service.predict_control(control, ControlRecipe(version), texts)
            seconds = (time.perf_counter() - t0) / len(texts)
            metrics = summarize(gold, np.array([p.probabilities for p, _ in preds]))
            row = {"prompt": prompt.name, "mode": mode.name if mode else "direct",
                   **{k: metrics[k] for k in ("accuracy", "macro_f1", "ece")}, "seconds_per_item": round(seconds, 3)}
            if direct is None:
                direct = row
            else:
                row.update(macro_f1_gain=round(row["macro_f1"] - direct["macro_f1"], 4),
                           cost_ratio_to_direct=round(seconds / max(direct["seconds_per_item"], 1e-9), 1))
            rows.append(row)
            if mode is not None and mode.samples == 1:
                rendered = render(control, version, codes=service.uses_codes(control))
                examples[prompt.name] = [{"text": t[:200], "rationale": service.rationale(rendered, t, 0)}
                                         for t in texts[:EXAMPLES]]
    return {"dataset": dataset.name, "n": len(texts), "model": service.engine.model_id,
            "max_tokens": max((m.max_tokens for m in modes), default=0),
            "rows": rows, "example_rationales": examples}
