"""What the zero-label template choice is worth (`template-bench`): every template's macro-F1 and
ECE on a test split, content-free calibrated and batch-calibrated on each sample, its mutual
information on samples of unlabelled texts of the size the service chooses on, the template each
sample would choose and the macro-F1 version 0 then has, with and without batch calibration.
The unlabelled texts are a seeded sample of the train split, used without their labels.
"""
from __future__ import annotations

import time

import numpy as np

from ..labeling.calibration import Calibrator
from ..labeling.label_config import parse_label_config
from ..labeling.service import LabelingService
from ..labeling.templates import DEFAULT, TEMPLATES, mutual_information
from ..metrics.single_label import summarize
from ..refinement.selection.template_choice import batch_ready, pick, template_answers
from .datasets import Dataset


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
        test_p = template_answers(service, control, name, list(test.texts))
        samples[name] = template_answers(service, control, name, unlabelled)
        scores = summarize(gold, test_p)
        batched = {n: summarize(gold, batch_answers(test_p, samples[name][:n])) for n in sizes}
        rows[name] = {"macro_f1": scores["macro_f1"], "ece": scores["ece"],
                      "batch": {n: {k: s[k] for k in ("macro_f1", "ece")} for n, s in batched.items()},
                      "mutual_information": {n: round(mutual_information(samples[name][:n]), 4) for n in sizes}}
        if progress:
            progress(name)
    # as the service does, one choice per sample size: the built-in template is served first,
    # then the previous choice
    highest, chosen, confidence, served = {}, {}, {}, DEFAULT
    for n in sorted(sizes):
        served, highest[n], share = pick({name: p[:n] for name, p in samples.items()}, served, alpha)
        chosen[n], confidence[n] = served, round(share, 3)
    best = max(rows, key=lambda t: rows[t]["macro_f1"])
    return {"dataset": test.name, "labels": len(control.labels), "test_items": len(gold), "seed": seed,
            "templates": rows, "highest": highest, "confidence": confidence, "chosen": chosen,
            "default_macro_f1": rows[DEFAULT]["macro_f1"],
            "highest_macro_f1": {n: rows[t]["macro_f1"] for n, t in highest.items()},
            "chosen_macro_f1": {n: rows[t]["macro_f1"] for n, t in chosen.items()},
            "chosen_batch_macro_f1": {n: rows[t]["batch"][n]["macro_f1"] if batch_ready(n, len(control.labels))
                                      else rows[t]["macro_f1"] for n, t in chosen.items()},
            "best_template": best, "seconds": round(time.perf_counter() - t0, 1)}


def batch_answers(answers: np.ndarray, sample: np.ndarray) -> np.ndarray:
    """`answers` (content-free calibrated) batch-calibrated on `sample` (the same template's
    answers on unlabelled texts), as the service serves them after a choice on that sample."""
    return Calibrator.identity(answers.shape[1]).batched(sample).apply(np.log(np.clip(answers, 1e-12, None)), False)
