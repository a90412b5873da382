"""A multi-choice project learns on real parts: gunicorn /webhook → Redis → a real `rq` worker
process refines the multi-choice control (candidates, decision table) → /predict serves the result."""
import json

import numpy as np
import pytest
import requests

from backend.evaluation.datasets import Dataset, load_dataset
from tests.conftest import DATASETS, MODEL_DIR, load_fixture
from tests.integration.test_refinement_job import env, run_worker_burst  # noqa: F401  (fixture)
from tests.ls_payloads import annotation_event

pytestmark = [pytest.mark.service, pytest.mark.model]

PROJECT = 43
LABELS = ("gratitude", "curiosity", "love", "anger")


def emotions_subset(n: int) -> Dataset:
    """goemotions train items that carry one of LABELS, restricted to those labels."""
    full = load_dataset(DATASETS / "goemotions" / "train.jsonl")
    index = {full.labels.index(label): k for k, label in enumerate(LABELS)}
    texts, sets = [], []
    for text, labels in zip(full.texts, full.label_sets):
        kept = tuple(sorted(index[j] for j in labels if j in index))
        if kept:
            texts.append(text)
            sets.append(kept)
    return Dataset("goemotions-4", LABELS, tuple(texts[:n]), (), tuple(sets[:n]))


DATA = emotions_subset(40)


@pytest.fixture(scope="module")
def multi_env(env):  # noqa: F811
    """On a busy machine a job can outlast the default budget (later candidates are then skipped);
    here every candidate must run for the decision table to be checked. Two demonstrations per
    prompt: the same plans as with four, at fewer tokens."""
    return {**env, "REFINE_MAX_SECONDS": "1800", "REFINE_MAX_SHOTS": "2"}


def test_multi_choice_annotations_refine_and_predict_serves_the_outcome(server_factory, multi_env, redis_conn):
    env = multi_env
    assert np.bincount([j for s in DATA.label_sets for j in s]).min() >= 5
    server = server_factory(env)
    config = DATA.label_config()
    setup = {"project": f"{PROJECT}.1795402611", "schema": config}
    v0 = requests.post(server.url + "/setup", json=setup, timeout=3).json()["model_version"]
    for i in range(len(DATA.texts)):
        r = requests.post(server.url + "/webhook", json=annotation_event(DATA, i, project=PROJECT), timeout=1)
        assert r.status_code == 200 and r.json()["stored"] == 1
    start = load_fixture("webhook-start-training.json")
    start["project"].update(id=PROJECT, label_config=config)
    assert requests.post(server.url + "/webhook", json=start, timeout=1).json()["job"]["status"] == "queued"

    worker = run_worker_burst(env)
    assert worker.returncode == 0, worker.stderr[-3000:]
    (job,) = [j for j in requests.get(server.url + f"/jobs?project={PROJECT}", timeout=5).json()["jobs"]
              if j["reason"] == "START_TRAINING"]
    assert job["status"] == "finished", job
    decision = job["result"]["controls"]["label"]
    assert decision["n_eval"] == len(DATA.texts)
    names = [row["name"] for row in decision["candidates"]]
    assert names[0] == "current" and {"calibrated", "2-shot", "2-shot+calibrated", "head"} <= set(names)
    for row in decision["candidates"]:
        assert {"micro_f1", "macro_f1", "subset_accuracy", "ece", "log_loss"} <= set(row)
    assert all(0 < row["threshold"] < 1 for row in decision["candidates"][1:])  # each fitted its own, or 0.5
    served = job["result"]["model_version"]
    threshold = 0.5
    if decision["accepted"]:
        assert decision["p_value"] < 0.05 and served.endswith(".v1")
        stored = json.loads((MODEL_DIR / "versions" / f"project-{PROJECT}" / f"{served}.json").read_text())
        recipe = stored["controls"]["label"]
        assert recipe["calibrator"] or recipe["head"] or recipe["prompt"]["demos"]
        if recipe["head"]:
            assert recipe["head"]["one_vs_rest"] and len(recipe["head"]["coef"]) == len(LABELS)
        threshold = recipe.get("threshold") or 0.5
        assert threshold == next(r for r in decision["candidates"] if r["name"] == decision["best"])["threshold"]
    else:
        assert served == v0

    body = load_fixture("predict-choices-single.json")
    body.update(project=setup["project"], label_config=config)
    body["tasks"] = [dict(body["tasks"][0], data={"text": "Thank you so much, this is really kind of you!"})]
    (item,) = requests.post(server.url + "/predict", json=body, timeout=100).json()["results"]
    assert item["model_version"] == served
    (region,) = item["result"]
    assert set(region["probabilities"]) == set(LABELS) and set(region["value"]["choices"]) <= set(LABELS)
    assert "gratitude" in region["value"]["choices"]
    chosen = set(region["value"]["choices"])
    above = {label for label, p in region["probabilities"].items() if p >= threshold}
    assert chosen == (above or {max(region["probabilities"], key=region["probabilities"].get)})
    expected = np.prod([p if label in chosen else 1 - p for label, p in region["probabilities"].items()])
    assert region["score"] == pytest.approx(expected, abs=1e-4)
