"""Evaluate and benchmark the request path on a labelled dataset, measured in one run."""
from __future__ import annotations

import time
from typing import Callable

import numpy as np

from ..labeling.label_config import parse_label_config
from ..labeling.prompt import Demo, PromptVersion, render
from ..labeling.recipe import ControlRecipe
from ..labeling.service import LabelingService
from .datasets import Dataset
from .metrics import summarize

Progress = Callable[[int], None]


def _probabilities(service: LabelingService, dataset: Dataset, version: PromptVersion, progress: Progress | None):
    control = parse_label_config(dataset.label_config()).controls[0]
    service.calibrator(control, version)  # content-free calibration is a one-off, not per item
    raw, cal = [], []
    t0 = time.perf_counter()
    for text in dataset.texts:
        (pred, _), = service.predict_control(control, ControlRecipe(version), [text])
        raw.append(pred.raw_probabilities)
        cal.append(pred.probabilities)
        if progress:
            progress(1)
    return np.array(raw), np.array(cal), time.perf_counter() - t0


def evaluate(service: LabelingService, dataset: Dataset, version: PromptVersion | None = None,
             progress: Progress | None = None) -> dict:
    version = version or PromptVersion()
    raw, cal, seconds = _probabilities(service, dataset, version, progress)
    gold = np.array(dataset.gold)
    return {
        "dataset": dataset.name,
        "n": len(gold),
        "labels": list(dataset.labels),
        "model": service.engine.model_id,
        "version": version.name,
        "raw": summarize(gold, raw),
        "calibrated": summarize(gold, cal),
        "majority_class_accuracy": round(float(np.bincount(gold).max() / len(gold)), 4),
        "items_per_s": round(len(gold) / seconds, 2),
    }


def benchmark(service: LabelingService, dataset: Dataset, demos_from: Dataset, shots: int = 8) -> dict:
    """Items/s of the engine as /predict uses it vs raw llama.cpp prefill of the same prompts."""
    engine = service.engine
    if not hasattr(engine, "prefill"):
        raise ValueError("bench needs an engine with raw prefill (the local llama.cpp engine)")
    control = parse_label_config(dataset.label_config()).controls[0]
    zero = PromptVersion(name="zero-shot")
    demos = tuple(Demo(t, (demos_from.labels[g],)) for t, g in zip(demos_from.texts[:shots], demos_from.gold[:shots]))
    few = PromptVersion(name=f"{shots}-shot", demos=demos)
    n = len(dataset.texts)

    def timed(fn) -> float:
        t0 = time.perf_counter()
        fn()
        return time.perf_counter() - t0

    results = {}
    for version in (zero, few):
        service.calibrator(control, version)
        rendered = render(control, version)
        prompts = [rendered.prefix + rendered.item(t) for t in dataset.texts]
        engine_s = timed(lambda: service.predict_control(control, ControlRecipe(version), list(dataset.texts)))
        raw_s = timed(lambda: [engine.prefill(p) for p in prompts])
        results[version.name] = {
            "engine_items_per_s": round(n / engine_s, 2),
            "raw_prefill_items_per_s": round(n / raw_s, 2),
            "ratio_engine_to_raw_prefill": round(raw_s / engine_s, 3),
            "prompt_prefix_tokens": engine.count_tokens(rendered.prefix),
            "seconds_per_item": engine_s / n,
        }
    results["cost_ratio_few_shot_to_zero_shot"] = round(
        results[few.name]["seconds_per_item"] / results[zero.name]["seconds_per_item"], 3
    )
    results["n"] = n
    results["model"] = engine.model_id
    return results
