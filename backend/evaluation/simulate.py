"""`eval --simulate`: stream a dataset's train split as Label Studio annotation webhooks into a
running service (real gunicorn, real RQ worker, Redis), let it refine, and measure each version
on the test split, in the same run as the baselines it must beat: the embedding head alone on
the same labels and a plain calibrated prompt (and the naive free-text prompt, version 0 and
version 0 pooled with the head). Each train item is predicted by the serving version before its
annotation is sent, as Label Studio does when an annotator opens a task. Each round also says
how soon the job published its first better version (the cheap stage) and how long the whole
job took."""
from __future__ import annotations

import json
import socket
import tempfile
import time
from pathlib import Path

import numpy as np
import requests

from ..metrics.single_label import summarize
from ..settings import Settings
from .datasets import Dataset

PROJECT = 1
BATCH = 50


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def annotation_webhook(data: Dataset, i: int, project: int = PROJECT) -> dict:
    """The body Label Studio sends on ANNOTATION_CREATED (shape as captured from LS 1.23)."""
    task_id = 100000 + i
    return {
        "action": "ANNOTATION_CREATED",
        "project": {"id": project, "label_config": data.label_config()},
        "task": {"id": task_id, "project": project, "data": {"text": data.texts[i]}},
        "annotation": {
            "id": 500000 + i, "task": task_id, "project": project, "was_cancelled": False,
            "created_at": f"2026-01-01T00:00:{i % 60:02d}.{i:06d}Z", "updated_at": f"2026-01-01T00:00:{i % 60:02d}.{i:06d}Z",
            "result": [{"from_name": "label", "to_name": "text", "type": "choices",
                        "value": {"choices": [data.labels[data.gold[i]]]}}],
        },
    }


def _wait_ready(url: str, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if requests.get(url + "/health", timeout=1).json().get("model_state") == "ready":
                return
        except requests.RequestException:
            pass
        time.sleep(0.3)
    raise TimeoutError("the service did not become ready")


def _served_probs(url: str, data: Dataset, rows: range | None = None) -> tuple[np.ndarray, set]:
    """What /predict answers for the items `rows` (all by default): probabilities in label order,
    versions seen."""
    config = data.label_config()
    rows = range(len(data.texts)) if rows is None else rows
    probs, versions = [], set()

    def post(tasks: list[dict]) -> list[dict]:
        r = requests.post(url + "/predict", json={"tasks": tasks, "label_config": config, "project": f"{PROJECT}.0"},
                          timeout=300)
        r.raise_for_status()
        results = r.json()["results"]
        if len(results) == 1 and len(tasks) > 1:  # too slow for one batch: one task per request, as Label Studio does
            return [item for task in tasks for item in post([task])]
        return results

    for start in range(0, len(rows), BATCH):
        tasks = [{"id": i, "data": {"text": data.texts[i]}} for i in rows[start:start + BATCH]]
        for item in post(tasks):
            versions.add(item["model_version"])
            p = item["result"][0]["probabilities"]
            probs.append([p[label] for label in data.labels])
    return np.array(probs), versions


def _measure(url: str, data: Dataset, keep: list | None = None) -> dict:
    t0 = time.perf_counter()
    probs, versions = _served_probs(url, data)
    seconds = time.perf_counter() - t0
    if keep is not None:
        keep.append(probs)
    return {**summarize(np.array(data.gold), probs), "version": ",".join(sorted(versions)),
            "items_per_s": round(len(data.texts) / seconds, 2)}


def _refine(url: str, project: int, timeout: float) -> dict:
    body = {"action": "START_TRAINING", "project": {"id": project}}
    job_id = requests.post(url + "/webhook", json=body, timeout=5).json()["job"]["id"]
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        jobs = requests.get(url + f"/jobs?project={project}", timeout=5).json()["jobs"]
        job = next((j for j in jobs if j["id"] == job_id), None)
        if job and job["status"] in ("finished", "failed"):
            return job
        time.sleep(1)
    raise TimeoutError(f"refinement job {job_id} did not finish in {timeout:.0f} s")


def head_only_macro_f1(train_emb: np.ndarray, train: Dataset, n: int, test_emb: np.ndarray, test: Dataset) -> float:
    """The supervised baseline on the same ground truth: embeddings + logistic regression alone."""
    from ..labeling.head import unseen_label_mass
    from ..metrics.single_label import macro_f1
    from ..refinement.candidates.embedding_head import head_probs, train_head

    gold = np.array(train.gold[:n])
    coef, intercept = train_head(train_emb[:n], gold, len(train.labels))
    pred = head_probs(coef, intercept, test_emb, unseen_label_mass(gold, len(train.labels))).argmax(1)
    return round(macro_f1(np.array(test.gold), pred, len(test.labels)), 4)


def plain_calibrated(service, test: Dataset) -> dict:
    """The zero-shot baseline every version must beat: the plain instruction ("Classify the text
    into one of these labels: …", labeling/templates.py) under content-free calibration, on the
    test split."""
    from ..labeling.label_config import parse_label_config
    from ..labeling.recipe import ControlRecipe
    from ..labeling.templates import template_prompt

    control = parse_label_config(test.label_config()).controls[0]
    preds = service.predict_control(control, ControlRecipe(template_prompt("plain", control)), list(test.texts))
    metrics = summarize(np.array(test.gold), np.array([p.probabilities for p, _ in preds]))
    return {"macro_f1": metrics["macro_f1"], "ece": metrics["ece"]}


def cross_validated(result: dict) -> dict:
    """Each candidate's cross-validated macro-F1 in the job's decision (first two stages), per
    control: what the selection saw, beside what the served version does on the test items."""
    return {control: {row["name"]: row.get("macro_f1") for row in decision.get("candidates", [])}
            for control, decision in (result.get("controls") or {}).items() if isinstance(decision, dict)}


def first_better_seconds(result: dict) -> float | None:
    """Seconds from the job's start to its first published version (None: it published none)."""
    if result.get("stages"):
        return result["stages"][0]["seconds"]
    return result.get("seconds") if result.get("status") in ("published", "refreshed") else None


def tuned_outcome(result: dict) -> dict:
    """Per control, what the job's fine-tuned head stage did: its best candidate, whether it
    shipped, and the scores it was compared by (cross-validated label F1 less selection
    optimism: optimizer.ControlSearch.tuned_stage), or that it shipped as the refresh of a
    version on a tuned body; or why it did not run."""
    out = {}
    for name, decision in (result.get("controls") or {}).items():
        tuned = decision.get("tuned") if isinstance(decision, dict) else None
        if not tuned:
            continue
        compared = next((c for c in tuned["candidates"] if "compared_with" in c), None)
        out[name] = {"best": tuned["best"], "accepted": tuned["accepted"],
                     **({"refresh": True} if tuned.get("refresh") else {}),
                     **({"candidate": compared["name"],
                         "score": round(compared["macro_f1"] - compared["optimism"], 4),
                         "against": compared["compared_with"], "against_score": compared["compared_score"]}
                        if compared and "macro_f1" in compared else {}),
                     **({"skipped": tuned["skipped"]} if not tuned["candidates"] else {})}
    return out


def verdict(row: dict, plain: dict | None) -> str:
    """One line per round: the served version against the best baseline."""
    baselines = {"head alone": row["head_only_macro_f1"], **({"plain calibrated": plain["macro_f1"]} if plain else {})}
    name, best = max(baselines.items(), key=lambda kv: kv[1])
    first = row.get("first_better_seconds")
    return (f"{row['labels']} labels: served {row['macro_f1']:.3f} (ECE {row['ece']:.3f}), "
            + ", ".join(f"{k} {v:.3f}" for k, v in baselines.items())
            + f": {row['macro_f1'] - best:+.3f} against {name}"
            + (f"; first better version {first:.0f} s into a {row['job_seconds']:.0f} s job" if first is not None else
               "; no new version"))


def v0_head_ensemble(v0_train: np.ndarray, train_emb: np.ndarray, train: Dataset, n: int,
                     v0_test: np.ndarray, test_emb: np.ndarray, test: Dataset, folds: int) -> dict:
    """The ensemble baseline on the same ground truth: version 0's distribution pooled with the
    embedding head, weight and temperature chosen by cross-validation on the `n` labels (the
    refinement's own "current+head" candidate, measured on the test split)."""
    from ..labeling.recipe import ControlRecipe
    from ..refinement.candidates.embedding_head import evaluate_head
    from ..refinement.validation.crossval import CandidateResult, fold_ids

    gold = np.array(train.gold[:n])
    llm = CandidateResult("version 0", ControlRecipe(), v0_train[:n], gold)
    pooled = evaluate_head(llm, train_emb[:n], fold_ids(n, folds))[1]
    probs = pooled.recipe.head.combine(v0_test, test_emb)
    metrics = summarize(np.array(test.gold), probs)
    return {"v0_head_ensemble_macro_f1": metrics["macro_f1"], "v0_head_ensemble_ece": metrics["ece"],
            "v0_head_ensemble_weight_llm": pooled.recipe.head.weight_llm}


def simulate(settings: Settings, train: Dataset, test: Dataset, rounds: list[int], naive: dict | None,
             log=print, probs_out: list | None = None, plain: dict | None = None) -> dict:
    """Run the rounds; `probs_out`, if given, receives the test probabilities of v0 and of each
    round; `plain` is plain_calibrated's result, measured by the caller (it holds the model)."""
    from ..supervisor import Stack, exit_on_sigterm

    exit_on_sigterm()
    workdir = Path(tempfile.mkdtemp(prefix="llmlb-sim-"))
    stack_settings = settings.with_overrides(host="127.0.0.1", port=_free_port(), model_dir=workdir,
                                             llm_model=str(settings.model_path.resolve()), redis_url="", redis_host="")
    env = {"LLM_MODEL": str(settings.model_path.resolve()), "REFINE_MIN_NEW": "1000000000",
           "REFINE_DELAY": "1000000000", "LOG_LEVEL": "WARNING"}
    from ..labeling.head import Embedder

    embedder = Embedder()
    train_emb, test_emb = embedder.encode(list(train.texts[:max(rounds)])), embedder.encode(list(test.texts))
    rows = []
    with open(workdir / "service.log", "wb") as service_log, Stack(stack_settings, env, service_log) as stack:
        _wait_ready(stack.url)
        kept: list = []
        v0 = _measure(stack.url, test, kept)
        log(f"round 0: {json.dumps(v0)}")
        if probs_out is not None:
            probs_out.append(kept[0])
        # Label Studio asks for the project's predictions before anyone annotates, and the
        # debounced job that follows chooses version 0's template on those tasks
        chosen = template_round(stack.url, test, kept, timeout=settings.refine_max_seconds + 300)
        if chosen is not None:
            log(f"round 0 after the template choice: {json.dumps(chosen)}")
        v0_test = kept[-1]
        v0_train, _ = _served_probs(stack.url, train, range(max(rounds)))
        sent = 0
        for target in rounds:
            target = min(target, len(train.texts))
            # Label Studio predicts a task when an annotator opens it: the version serving then
            # scores each item before its annotation arrives
            _served_probs(stack.url, train, range(sent, target))
            for i in range(sent, target):
                requests.post(stack.url + "/webhook", json=annotation_webhook(train, i), timeout=5).raise_for_status()
            sent = target
            job = _refine(stack.url, PROJECT, timeout=settings.refine_max_seconds * 3 + 300)
            result = job.get("result") or {}
            row = {"labels": target, "job_status": job["status"], "job_seconds": job.get("seconds"),
                   "decision": result.get("status"),
                   "chosen": result.get("kind", ""),
                   "first_better_seconds": first_better_seconds(result),
                   "stages": [f"{st['stage']}: {st['kind']}" for st in result.get("stages", [])],
                   "tuned": tuned_outcome(result),
                   "logit_cache": result.get("logit_cache"),  # `predicted`: items /predict had scored
                   "cv_macro_f1": cross_validated(result),
                   **_measure(stack.url, test, probs_out),
                   "head_only_macro_f1": head_only_macro_f1(train_emb, train, target, test_emb, test),
                   **v0_head_ensemble(v0_train, train_emb, train, target, v0_test, test_emb, test, settings.refine_folds)}
            rows.append(row)
            log(f"round {target}: {json.dumps(row)}")
    for row in rows:
        log(verdict(row, plain))
    return {"dataset": test.name, "n_test": len(test.texts), "naive_free_text": naive, "plain_calibrated": plain,
            "version_0": v0, "version_0_chosen": chosen, "rounds": rows, "service_log": str(workdir / "service.log")}


def template_round(url: str, test: Dataset, kept: list, timeout: float) -> dict | None:
    """The job /predict's tasks schedule before any annotation, run now: version 0's template
    choice (with its batch calibration) on the test items just predicted, as a project's own
    tasks. The served version measured again if it published one, else None."""
    job = _refine(url, PROJECT, timeout)
    templates = (job.get("result") or {}).get("templates") or {}
    if templates.get("status") != "published":
        return None
    controls = {name: {"template": c["template"], "calibration": c["calibration"]["method"],
                       "unlabelled_texts": c["unlabelled_texts"]} for name, c in templates["controls"].items()}
    return {**_measure(url, test, kept), "kind": templates["kind"], "controls": controls,
            "job_seconds": job.get("seconds")}
