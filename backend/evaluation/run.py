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


def report_systems(service: LabelingService, test: Dataset, *, train: Dataset | None = None, n_train: int = 0,
                   naive: bool = False, settings=None, progress: Progress | None = None) -> list[dict]:
    """Every system on the same test split, for the HTML report: naive free text, version 0 (raw and
    calibrated) and, with `n_train` labels from `train`, embedding + LR and the refined version."""
    from .naive import naive_predictions
    from .report import system_metrics

    labels = list(test.labels)
    gold = np.array(test.gold)
    raw, cal, _ = _probabilities(service, test, PromptVersion(), progress)
    systems = []
    if naive:
        systems.append(system_metrics("naive free text", gold, labels, pred=naive_predictions(service.engine, test)))
    systems += [system_metrics("version 0 raw", gold, labels, probs=raw),
                system_metrics("version 0", gold, labels, probs=cal)]
    if train is not None and n_train:
        from ..refinement.head import _head_probs, train_head
        from ..refinement.optimizer import optimize_control

        texts, train_gold = list(train.texts[:n_train]), np.array(train.gold[:n_train])
        emb = service.embedder.encode(texts)
        coef, intercept = train_head(emb, train_gold, len(labels))
        test_emb = service.embedder.encode(list(test.texts))
        systems.append(system_metrics(f"embedding + LR ({n_train} labels)", gold, labels,
                                      probs=_head_probs(coef, intercept, test_emb)))
        control = parse_label_config(test.label_config()).controls[0]
        decision = optimize_control(
            service, control, texts, train_gold, ControlRecipe(), folds=settings.refine_folds,
            shots=settings.refine_max_shots, alpha=settings.refine_alpha,
            deadline=time.monotonic() + settings.refine_max_seconds,
        )
        recipe = decision.best.recipe if decision.accepted else ControlRecipe()
        preds = service.predict_control(control, recipe, list(test.texts))
        systems.append(system_metrics(
            f"refined ({n_train} labels)", gold, labels, probs=np.array([p.probabilities for p, _ in preds]),
            extra={"chosen": decision.best.name if decision.accepted else "current (nothing significant)",
                   "candidates": decision.table},
        ))
    return systems
