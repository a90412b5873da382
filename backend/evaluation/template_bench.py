"""What the zero-label template choice is worth (`template-bench`): every template's macro-F1 and
ECE on a test split, its mutual information on samples of unlabelled texts of the size the
service chooses on, the template each sample would choose and the macro-F1 version 0 then has.
The unlabelled texts are a seeded sample of the train split, used without their labels.
"""
from __future__ import annotations

import time

import numpy as np

from ..labeling.label_config import parse_label_config
from ..labeling.recipe import ControlRecipe
from ..labeling.service import LabelingService
from ..labeling.templates import DEFAULT, TEMPLATES, advantage, mutual_information, template_prompt
from ..metrics.single_label import summarize
from .datasets import Dataset


def _probabilities(service: LabelingService, control, name: str, texts: list[str]) -> np.ndarray:
    recipe = ControlRecipe(template_prompt(name, control))
    return np.array([p.probabilities for p, _ in service.predict_control(control, recipe, texts)])


def template_bench(service: LabelingService, train: Dataset, test: Dataset, sizes: list[int], seed: int = 0,
                   alpha: float = 0.05, progress=None) -> dict:
    control = parse_label_config(test.label_config()).controls[0]
    rng = np.random.default_rng(seed)
    order = rng.permutation(len(train.texts))[:max(sizes)]
    unlabelled = [train.texts[i] for i in order]
    gold = np.array(test.gold)
    rows: dict[str, dict] = {}
    samples: dict[str, np.ndarray] = {}
    t0 = time.perf_counter()
    for name in TEMPLATES:
        test_p = _probabilities(service, control, name, list(test.texts))
        samples[name] = _probabilities(service, control, name, unlabelled)
        scores = summarize(gold, test_p)
        rows[name] = {"macro_f1": scores["macro_f1"], "ece": scores["ece"],
                      "mutual_information": {n: round(mutual_information(samples[name][:n]), 4) for n in sizes}}
        if progress:
            progress(name)
    # as the service does: the highest on each sample replaces the one served (the built-in one,
    # then the previous choice) only if it wins in 1 - alpha of bootstrap resamples
    highest, chosen, confidence, served = {}, {}, {}, DEFAULT
    for n in sorted(sizes):
        highest[n] = max(rows, key=lambda t: (rows[t]["mutual_information"][n], t == served))
        confidence[n] = 1.0 if highest[n] == served else round(
            advantage(samples[highest[n]][:n], samples[served][:n]), 3)
        served = chosen[n] = highest[n] if confidence[n] >= 1 - alpha else served
    best = max(rows, key=lambda t: rows[t]["macro_f1"])
    return {"dataset": test.name, "labels": len(control.labels), "test_items": len(gold), "seed": seed,
            "templates": rows, "highest": highest, "confidence": confidence, "chosen": chosen,
            "default_macro_f1": rows[DEFAULT]["macro_f1"],
            "highest_macro_f1": {n: rows[t]["macro_f1"] for n, t in highest.items()},
            "chosen_macro_f1": {n: rows[t]["macro_f1"] for n, t in chosen.items()},
            "best_template": best, "seconds": round(time.perf_counter() - t0, 1)}
