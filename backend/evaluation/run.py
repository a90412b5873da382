"""Evaluate and benchmark the request path on a labelled dataset, measured in one run."""
from __future__ import annotations

import time
from typing import Callable

import numpy as np

from ..labeling.label_config import parse_label_config
from ..labeling.prompt import Demo, PromptVersion, render
from ..labeling.recipe import ControlRecipe
from ..labeling.service import LabelingService
from ..metrics.single_label import summarize
from ..refinement.candidates.few_shot import demo_pool, nearest_shot
from .datasets import Dataset

Progress = Callable[[int], None]


def _usage(engine) -> dict | None:
    """Token counters of the engine, if it keeps any (a remote server's usage, or llama.cpp's
    evaluated tokens), to report tokens per item."""
    meter = getattr(engine, "usage", None)
    if meter is not None:
        return {"meter": meter, "total": meter.total()}
    if hasattr(engine, "tokens_evaluated"):
        return {"tokens_evaluated": engine.tokens_evaluated}
    return None


def _usage_report(engine, before: dict | None, n: int) -> dict | None:
    if before is None or not n:
        return None
    if "meter" in before:
        meter = before["meter"]
        spent = meter.total().minus(before["total"])
        out = meter.to_dict(spent)
        out.update(prompt_tokens_per_item=round(spent.prompt_tokens / n, 2),
                   completion_tokens_per_item=round(spent.completion_tokens / n, 3),
                   requests_per_item=round(spent.requests / n, 3))
        if meter.prices.known:
            out["cost_per_item"] = round(meter.prices.cost(spent) / n, 8)
        return out
    return {"tokens_evaluated_per_item": round((engine.tokens_evaluated - before["tokens_evaluated"]) / n, 2)}


def _probabilities(service: LabelingService, dataset: Dataset, version: PromptVersion, progress: Progress | None):
    """Raw and calibrated probabilities of every item, seconds spent and usage (calibration excluded).

    Items go to the service in chunks of a few times the engine's parallelism: one at a time for
    the local engine, concurrently for a server."""
    control = parse_label_config(dataset.label_config()).controls[0]
    service.calibrator(control, version)  # content-free calibration is a one-off, not per item
    parallel = service.engine.capabilities.parallel_requests
    chunk = 1 if parallel <= 1 else 4 * parallel
    before = _usage(service.engine)
    raw, cal = [], []
    t0 = time.perf_counter()
    texts = list(dataset.texts)
    for start in range(0, len(texts), chunk):
        part = texts[start:start + chunk]
        for pred, _ in service.predict_control(control, ControlRecipe(version), part):
            raw.append(pred.raw_probabilities)
            cal.append(pred.probabilities)
        if progress:
            progress(len(part))
    seconds = time.perf_counter() - t0
    return np.array(raw), np.array(cal), seconds, _usage_report(service.engine, before, len(texts))


def evaluate(service: LabelingService, dataset: Dataset, version: PromptVersion | None = None,
             progress: Progress | None = None) -> dict:
    version = version or PromptVersion()
    raw, cal, seconds, usage = _probabilities(service, dataset, version, progress)
    if dataset.multiple:
        return _multilabel_report(service, dataset, version, raw, cal, seconds, usage)
    gold = np.array(dataset.gold)
    report = {
        "dataset": dataset.name,
        "n": len(gold),
        "labels": list(dataset.labels),
        "model": service.engine.model_id,
        "version": version.name,
        "raw": summarize(gold, raw),
        "calibrated": summarize(gold, cal),
        "majority_class_accuracy": round(float(np.bincount(gold).max() / len(gold)), 4),
        "items_per_s": round(len(gold) / seconds, 2),
        "probability_source": service.engine.capabilities.probability_source,
    }
    if usage is not None:
        report["usage"] = usage
    return report


def _multilabel_report(service: LabelingService, dataset: Dataset, version: PromptVersion, raw: np.ndarray,
                       cal: np.ndarray, seconds: float, usage: dict | None) -> dict:
    """`evaluate` of a multi-label set: micro/macro-F1, exact-set accuracy and yes/no ECE of raw
    and calibrated P(yes), per-label precision/recall/F1 of the calibrated ones."""
    from ..metrics.multi_label import per_label, predicted_sets, summarize_multilabel

    gold = dataset.gold_matrix()
    frequent = np.zeros_like(gold)
    frequent[:, int(gold.sum(0).argmax())] = 1  # the "majority" baseline: always the most frequent label
    report = {
        "dataset": dataset.name,
        "n": len(gold),
        "multi_label": True,
        "labels": list(dataset.labels),
        "label_cardinality": round(float(gold.sum(1).mean()), 3),
        "model": service.engine.model_id,
        "version": version.name,
        "raw": summarize_multilabel(gold, raw),
        "calibrated": summarize_multilabel(gold, cal),
        "most_frequent_label_only": {k: v for k, v in summarize_multilabel(gold, frequent).items()
                                     if k in ("micro_f1", "macro_f1", "subset_accuracy")},
        "per_label_calibrated": {r["label"]: [r["precision"], r["recall"], r["f1"], r["support"]]
                                 for r in per_label(gold, predicted_sets(cal), list(dataset.labels))},
        "items_per_s": round(len(gold) / seconds, 3),
        "seconds": round(seconds, 1),
        "yes_no_questions_per_item": len(dataset.labels),
        "probability_source": service.engine.capabilities.probability_source,
    }
    if usage is not None:
        report["usage"] = usage
    return report


def first_demos(data: Dataset, shots: int) -> tuple[Demo, ...]:
    """The first `shots` items of `data` as demonstrations (what `bench` shows its k-shot prompts)."""
    return tuple(Demo(t, (data.labels[g],)) for t, g in zip(data.texts[:shots], data.gold[:shots]))


def benchmark(service: LabelingService, dataset: Dataset, demos_from: Dataset, shots: int = 8, nearest: int = 4) -> dict:
    """Items/s of the engine as /predict uses it vs raw llama.cpp prefill of the same prompts, for
    zero-shot, fixed k-shot (demos in the cached prefix) and per-task nearest demos (demos paid per task)."""
    engine = service.engine
    if not hasattr(engine, "prefill"):
        raise ValueError("bench needs an engine with raw prefill (the local llama.cpp engine)")
    control = parse_label_config(dataset.label_config()).controls[0]
    zero = PromptVersion(name="zero-shot")
    few = PromptVersion(name=f"{shots}-shot", demos=first_demos(demos_from, shots))
    pool = demo_pool(demos_from.texts, demos_from.gold, demos_from.labels)
    near = nearest_shot(zero, pool, nearest, f"{nearest}-nearest")
    n = len(dataset.texts)
    texts = list(dataset.texts)

    def timed(fn) -> float:
        t0 = time.perf_counter()
        fn()
        return time.perf_counter() - t0

    results = {}
    for version in (zero, few, near):
        service.calibrator(control, version)
        task_demos = service.task_demos(version, texts)
        service.task_demos(version, texts[:1])  # the pool's embeddings are cached, as when serving
        prompts = []
        for text, shown in zip(texts, task_demos):
            rendered = render(control, version, task_demos=shown)
            prompts.append(rendered.prefix + rendered.item(text))
        engine_s = timed(lambda: service.predict_control(control, ControlRecipe(version), texts))
        raw_s = timed(lambda: [engine.prefill(p) for p in prompts])
        results[version.name] = {
            "engine_items_per_s": round(n / engine_s, 2),
            "raw_prefill_items_per_s": round(n / raw_s, 2),
            "ratio_engine_to_raw_prefill": round(raw_s / engine_s, 3),
            "prompt_prefix_tokens": engine.count_tokens(render(control, version).prefix),
            "mean_prompt_tokens": round(float(np.mean([engine.count_tokens(p) for p in prompts])), 1),
            "seconds_per_item": engine_s / n,
        }
    for version in (few, near):
        results[f"cost_ratio_{version.name}_to_zero_shot"] = round(
            results[version.name]["seconds_per_item"] / results[zero.name]["seconds_per_item"], 3)
    results["n"] = n
    results["nearest_pool"] = len(pool)
    results["model"] = engine.model_id
    return results


def report_systems(service: LabelingService, test: Dataset, *, train: Dataset | None = None, n_train: int = 0,
                   naive: bool = False, settings=None, progress: Progress | None = None) -> list[dict]:
    """Every system on the same test split, for the HTML report: naive free text, version 0 (raw and
    calibrated) and, with `n_train` labels from `train`, embedding + LR and the refined version."""
    from ..metrics.html_report import system_metrics
    from .naive import naive_predictions

    if test.multiple:
        return _multilabel_systems(service, test, train=train, n_train=n_train, settings=settings, progress=progress)
    labels = list(test.labels)
    gold = np.array(test.gold)
    raw, cal, _, _ = _probabilities(service, test, PromptVersion(), progress)
    systems = []
    if naive:
        systems.append(system_metrics("naive free text", gold, labels, pred=naive_predictions(service.engine, test)))
    systems += [system_metrics("version 0 raw", gold, labels, probs=raw),
                system_metrics("version 0", gold, labels, probs=cal)]
    if train is not None and n_train:
        from ..labeling.head import unseen_label_mass
        from ..refinement.candidates.embedding_head import head_probs, train_head
        from ..refinement.candidates.reasoning_first import reasoning_modes
        from ..refinement.selection.optimizer import optimize_control

        texts, train_gold = list(train.texts[:n_train]), np.array(train.gold[:n_train])
        emb = service.embedder.encode(texts)
        coef, intercept = train_head(emb, train_gold, len(labels))
        test_emb = service.embedder.encode(list(test.texts))
        systems.append(system_metrics(f"embedding + LR ({n_train} labels)", gold, labels,
                                      probs=head_probs(coef, intercept, test_emb,
                                                        unseen_label_mass(train_gold, len(labels)))))
        control = parse_label_config(test.label_config()).controls[0]
        decision = optimize_control(
            service, control, texts, train_gold, ControlRecipe(), folds=settings.refine_folds,
            shots=settings.refine_max_shots, alpha=settings.refine_alpha,
            deadline=time.monotonic() + settings.refine_max_seconds,
            reasoning=reasoning_modes(settings, service.engine),
        )
        recipe = decision.best.recipe if decision.accepted else ControlRecipe()
        preds = service.predict_control(control, recipe, list(test.texts))
        systems.append(system_metrics(
            f"refined ({n_train} labels)", gold, labels, probs=np.array([p.probabilities for p, _ in preds]),
            extra={"chosen": decision.best.name if decision.accepted else "current (nothing significant)",
                   "candidates": decision.table},
        ))
    return systems


def _multilabel_systems(service: LabelingService, test: Dataset, *, train: Dataset | None, n_train: int,
                        settings, progress: Progress | None) -> list[dict]:
    """`report_systems` of a multi-label set: version 0 raw and calibrated and, with `n_train`
    labels, the one-vs-rest embedding head alone and the refined version. The naive free-text
    baseline answers with one label, so it does not apply here."""
    from ..labeling.calibration import sigmoid
    from ..metrics.html_report import multilabel_system_metrics
    from ..refinement.candidates.one_vs_rest_head import train_one_vs_rest
    from ..refinement.selection.optimizer import optimize_control

    labels, gold = list(test.labels), test.gold_matrix()
    raw, cal, _, _ = _probabilities(service, test, PromptVersion(), progress)
    systems = [multilabel_system_metrics("version 0 raw", gold, labels, raw),
               multilabel_system_metrics("version 0", gold, labels, cal)]
    if train is None or not n_train:
        return systems
    texts, train_gold = list(train.texts[:n_train]), train.gold_matrix()[:n_train]
    train_emb = service.embedder.encode(texts)
    coef, intercept = train_one_vs_rest(train_emb, train_gold)
    head = sigmoid(service.embedder.encode(list(test.texts)) @ coef.T + intercept)
    systems.append(multilabel_system_metrics(f"embedding + one-vs-rest LR ({n_train} labels)", gold, labels, head))
    threshold = _head_threshold(train_emb, train_gold, settings.refine_folds)
    systems.append(multilabel_system_metrics(f"embedding + one-vs-rest LR ({n_train} labels), threshold {threshold}",
                                             gold, labels, head, threshold=threshold))
    control = parse_label_config(test.label_config()).controls[0]
    decision = optimize_control(
        service, control, texts, train_gold, ControlRecipe(), folds=settings.refine_folds,
        shots=settings.refine_max_shots, alpha=settings.refine_alpha,
        deadline=time.monotonic() + settings.refine_max_seconds,
    )
    recipe = decision.best.recipe if decision.accepted else ControlRecipe()
    preds = service.predict_control(control, recipe, list(test.texts))
    systems.append(multilabel_system_metrics(
        f"refined ({n_train} labels)", gold, labels, np.array([p.probabilities for p, _ in preds]),
        extra={"chosen": decision.best.name if decision.accepted else "current (nothing significant)",
               "candidates": decision.table},
        threshold=recipe.threshold,
    ))
    return systems


def _head_threshold(embeddings: np.ndarray, gold: np.ndarray, folds: int) -> float:
    """The decision threshold a one-vs-rest head alone would ship with, fitted on its out-of-fold
    probabilities on the train labels as refinement fits it (0.5 where that loses), for a fair
    head-only baseline."""
    from ..refinement.candidates.one_vs_rest_head import one_vs_rest_oof
    from ..refinement.validation.control_kind import MULTIPLE
    from ..refinement.validation.crossval import CandidateResult, fold_ids

    fold = fold_ids(len(gold), folds)
    oof = one_vs_rest_oof(embeddings, gold, fold)
    head = CandidateResult("head", ControlRecipe(), oof, gold, kind=MULTIPLE).with_threshold(fold)
    return head.recipe.threshold or 0.5
