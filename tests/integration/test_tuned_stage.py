"""The fine-tuned head's stage on real parts (Redis, the embedded model, the bundled MiniLM): it
runs after the job's two stages once a control has enough labels, again only once they have
doubled, within its own budget; a version whose head reads a fine-tuned body is served by
/predict from the body stored in Redis."""
import json
import time

import numpy as np
import pytest

from backend.app import create_app
from backend.engines.factory import engine_id
from backend.engines.scripted import ScriptedEngine
from backend.evaluation.datasets import load_dataset
from backend.labeling.calibration import Calibrator
from backend.labeling.head import Embedder, HeadWeights, load_minilm
from backend.labeling.label_config import parse_label_config
from backend.labeling.model_version import ModelVersion
from backend.labeling.prompt import PromptVersion
from backend.labeling.recipe import ControlRecipe
from backend.labeling.tuned_body import TunedBody, is_tuned
from backend.refinement.candidates.body_tuning import LowerStates, tune_top
from backend.refinement.candidates.embedding_head import train_head
from backend.labeling.service import LabelingService
from backend.refinement.candidates.contract import Plan
from backend.refinement.job import publish_tuned, run_refinement, tuned_key, tuning_due
from backend.refinement.selection.optimizer import ControlSearch
from backend.refinement.validation.crossval import CandidateResult
from backend.settings import Settings
from backend.store.tuned_bodies import TunedBodies
from backend.store.versions import VersionRegistry
from tests.conftest import DATASETS
from tests.annotated_project import annotate
from tests.unit.helpers import SENTIMENT_CONFIG, WordEmbedder, data

pytestmark = pytest.mark.model

PROJECT = 46
DATA = load_dataset(DATASETS / "sms_spam" / "train.jsonl", limit=60)


def _settings(redis_url: str, tmp_path, **extra) -> Settings:
    return Settings.from_env({"MODEL_DIR": str(tmp_path), "REDIS_URL": redis_url, "REFINE_MAX_SHOTS": "0",
                              "REFINE_REASONING_SAMPLES": "0", "REFINE_REWRITE_ROUNDS": "0", "TEMPLATE_CHOICE": "false",
                              "REFINE_TUNE_MIN_ITEMS": "40", "REFINE_TUNE_MAX_PAIRS": "96", "REFINE_TUNE_LAYERS": "1",
                              **extra})


def test_the_stage_runs_once_a_control_has_enough_labels_and_again_once_they_have_doubled(engine, redis_conn, redis_url,
                                                                                      tmp_path):
    settings = _settings(redis_url, tmp_path)
    annotate(redis_conn, DATA, PROJECT, range(30))
    first = run_refinement(settings, redis_conn, PROJECT, engine=engine)
    assert "tuned" not in first["controls"]["label"]  # 30 labels: fewer than REFINE_TUNE_MIN_ITEMS

    annotate(redis_conn, DATA, PROJECT, range(60))
    out = run_refinement(settings, redis_conn, PROJECT, engine=engine)
    json.dumps(out)
    tuned = out["controls"]["label"]["tuned"]
    names = [c["name"] for c in tuned["candidates"]]
    # the embedded engine gives the states at the answer: the head that reads them beside the tuned body too
    assert len(names) == 6 and names[0] == "tuned-head" and all("tuned-head" in n for n in names[:3]), tuned
    assert names[3] == "tuned-head-state" and names[4].endswith("+tuned-head-state"), tuned
    assert names[5].endswith("+tuned-head-state-mix"), tuned
    assert all(c["judged_against"] == "current" and 0 <= c["p_vs_current"] <= 1 for c in tuned["candidates"]), tuned
    if tuned["accepted"] and out["controls"]["label"]["accepted"]:  # then it outscored the job's choice
        best = next(c for c in tuned["candidates"] if c["name"] == tuned["best"])
        assert best["compared_with"] == out["controls"]["label"]["best"], tuned
        assert best["macro_f1"] - best["optimism"] >= best["compared_score"] - 1e-3, tuned
    lineage = parse_label_config(DATA.label_config()).config_hash
    assert int(redis_conn.get(tuned_key(PROJECT, lineage, "label"))) == 60
    registry = VersionRegistry(redis_conn, engine_id(settings), settings.model_dir, ModelVersion)
    served = registry.current(PROJECT, parse_label_config(DATA.label_config()).config_hash)
    head = served.recipe("label").head
    if tuned["accepted"]:  # what shipped reads the fine-tuned body, stored in Redis
        assert [s["stage"] for s in out["stages"]][-1] == "tuned" and is_tuned(head.embedder)
        assert TunedBodies(redis_conn).load(head.embedder) is not None
    else:
        assert head is None or not is_tuned(head.embedder)
    assert tuning_due(settings, redis_conn, PROJECT, lineage, "label", 119) is None  # not doubled yet
    assert tuning_due(settings, redis_conn, PROJECT, lineage, "label", 120) is not None
    assert tuning_due(settings, redis_conn, PROJECT, "another-config", "label", 60) is not None  # starts over
    assert tuning_due(_settings(redis_url, tmp_path, REFINE_TUNE_SECONDS="0"), redis_conn, PROJECT + 1, lineage, "label",
                      500) is None


def test_a_stage_without_the_time_for_its_fine_tunings_is_skipped_and_says_why(engine, redis_conn, redis_url, tmp_path):
    settings = _settings(redis_url, tmp_path, REFINE_TUNE_SECONDS="0.001")
    annotate(redis_conn, DATA, PROJECT + 2, range(45))
    out = run_refinement(settings, redis_conn, PROJECT + 2, engine=engine)
    tuned = out["controls"]["label"]["tuned"]
    assert not tuned["accepted"] and not tuned["candidates"]
    assert tuned["skipped"] and tuned["skipped"][0].startswith("tuned-head: "), tuned
    lineage = parse_label_config(DATA.label_config()).config_hash
    assert redis_conn.get(tuned_key(PROJECT + 2, lineage, "label")) is None  # not tried: the next job tries again


@pytest.fixture(scope="module")
def tuned():
    """MiniLM's top layer tuned on the first 40 items (64 pairs): (MiniLM, its lower states of
    those items, the tuned layer, the body a version stores)."""
    import torch

    torch.set_num_threads(1)
    minilm = load_minilm()
    lower = LowerStates(minilm, list(DATA.texts[:40]), 1)
    layers = tune_top(lower, np.arange(40), np.array(DATA.gold[:40]), max_pairs=64)
    return minilm, lower, layers, TunedBody.of(layers)


class ShippedTuned:
    """A stand-in for the tuned head's candidate (the decision and publishing are what is under
    test): a head on a real fine-tuned body, right on every item with 0.95."""

    def __init__(self, body):
        self.body = body

    def plans(self, job):
        def run():
            job.bodies[self.body.name] = self.body
            probs = np.full((len(job.gold), 2), 0.05)
            probs[np.arange(len(job.gold)), job.gold] = 0.95
            head = HeadWeights(((0.0,) * 384,) * 2, (0.0, 0.0), weight_llm=0.0, embedder=self.body.name)
            return CandidateResult("tuned-head", ControlRecipe(PromptVersion(), None, head), probs, job.gold)
        return [Plan("tuned-head", run, late=True)]


def test_an_accepted_tuned_head_is_published_with_its_body_stored_first(tuned, redis_conn, tmp_path):
    body = tuned[3]
    label_task = parse_label_config(SENTIMENT_CONFIG)
    control = label_task.controls[0]
    texts, gold = data(80)
    search = ControlSearch(LabelingService(ScriptedEngine(), embedder=WordEmbedder()), control, texts, gold,
                           ControlRecipe(), folds=5, shots=0, alpha=0.05, deadline=time.monotonic() + 600,
                           candidates=(ShippedTuned(body),))
    search.second_stage()
    decision = search.tuned_stage(time.monotonic() + 600)
    assert decision.accepted and decision.best.name == "tuned-head"
    registry = VersionRegistry(redis_conn, "scripted", tmp_path, ModelVersion)
    parent = registry.current(PROJECT + 4, label_task.config_hash)
    version = publish_tuned(registry, TunedBodies(redis_conn), PROJECT + 4, label_task, parent,
                            {control.name: decision}, [(control, search)], 80, set())
    assert registry.current(PROJECT + 4, label_task.config_hash).label == version.label != parent.label
    assert version.kind == f"{control.name}:tuned-head" and version.recipe(control.name).head.embedder == body.name
    assert TunedBodies(redis_conn).load(body.name) == (body.top, body.tensors)


def test_predict_serves_a_head_on_a_fine_tuned_body_from_the_store(tuned, redis_conn, redis_url, tmp_path):
    """A version whose head (alone) reads a fine-tuned body, published as a job would: /predict
    answers with the head's probabilities on that body's embeddings, not the bundled ones."""
    minilm, lower, layers, body = tuned
    texts, gold = list(DATA.texts[:40]), np.array(DATA.gold[:40])
    coef, intercept = train_head(lower.encode(layers, range(len(texts))), gold, len(DATA.labels))
    head = HeadWeights(tuple(map(tuple, coef.tolist())), tuple(intercept.tolist()), weight_llm=0.0, embedder=body.name)
    settings = Settings.from_env({"MODEL_DIR": str(tmp_path), "REDIS_URL": redis_url})
    app = create_app(settings, engine_factory=ScriptedEngine, redis_conn=redis_conn)
    config = DATA.label_config()
    TunedBodies(redis_conn).save(body.name, body.top, body.tensors)
    version = app.extensions["llmlb.versions"].publish(PROJECT + 3, ModelVersion(
        label="", lineage=parse_label_config(config).config_hash, kind="label:tuned-head",
        controls={"label": ControlRecipe(PromptVersion(), None, head)}))
    tasks = [{"id": k, "data": {"text": t}} for k, t in enumerate(DATA.texts[40:46])]
    r = app.test_client().post("/predict", json={"project": f"{PROJECT + 3}.1", "label_config": config, "tasks": tasks})
    assert r.status_code == 200, r.json
    expected = head.combine(np.full((6, len(DATA.labels)), 0.5),
                            LowerStates(minilm, list(DATA.texts[40:46]), 1).encode(layers, range(6)))
    bundled = head.combine(np.full((6, len(DATA.labels)), 0.5), Embedder(minilm).encode(list(DATA.texts[40:46])))
    scores = [p["score"] for p in r.json["results"]]
    assert all(p["model_version"] == version.label for p in r.json["results"])
    np.testing.assert_allclose(scores, expected.max(axis=1), atol=1e-4)
    assert not np.allclose(scores, bundled.max(axis=1), atol=1e-4)

    redis_conn.delete(*redis_conn.keys("llmlb:tuned-body:*"))
    fresh = create_app(settings, engine_factory=ScriptedEngine, redis_conn=redis_conn)
    r = fresh.test_client().post("/predict", json={"project": f"{PROJECT + 3}.1", "label_config": config, "tasks": tasks})
    assert r.status_code == 503 and r.json["error"] == "tuned_body_missing", r.json


def test_a_job_repairs_a_current_version_whose_fine_tuned_body_was_lost(engine, tuned, redis_conn, redis_url, tmp_path):
    """Redis lost the body the current version's head reads: /predict answers 503, and the next job
    (even on ground truth the last finished job saw) judges the version without that head,
    publishes it when nothing beats it, and tunes a body anew; /predict answers again. REFINE_ALPHA
    is below the smallest p a bootstrap of 2,000 resamples gives: no candidate can win, so the
    repair itself is what ships."""
    minilm, lower, layers, body = tuned
    project, config = PROJECT + 5, DATA.label_config()
    lineage = parse_label_config(config).config_hash
    settings = _settings(redis_url, tmp_path, REFINE_TUNE_SECONDS="0.001", REFINE_ALPHA="0.0001")
    annotate(redis_conn, DATA, project, range(45))
    coef, intercept = train_head(lower.encode(layers, range(40)), np.array(DATA.gold[:40]), len(DATA.labels))
    head = HeadWeights(tuple(map(tuple, coef.tolist())), tuple(intercept.tolist()), weight_llm=0.0, embedder=body.name)
    TunedBodies(redis_conn).save(body.name, body.top, body.tensors)
    registry = VersionRegistry(redis_conn, engine_id(settings), settings.model_dir, ModelVersion)
    fitted = Calibrator((0.0,) * len(DATA.labels), method="fitted")  # learnt from labels without the head too
    broken = registry.publish(project, ModelVersion(label="", lineage=lineage, kind="label:calibrated+tuned-head",
                                                    gt_count=45, controls={"label": ControlRecipe(PromptVersion(),
                                                                                                  fitted, head)}))
    redis_conn.set(tuned_key(project, lineage, "label"), 45)  # tuned on these items: not due again until 90
    assert run_refinement(settings, redis_conn, project, engine=engine)["status"] == "kept"
    assert run_refinement(settings, redis_conn, project, engine=engine)["status"] == "unchanged"

    redis_conn.delete(*redis_conn.keys(f"llmlb:tuned-body:{body.name}"))
    app = create_app(settings, engine_factory=lambda: engine, redis_conn=redis_conn)
    tasks = [{"id": k, "data": {"text": t}} for k, t in enumerate(DATA.texts[45:48])]
    predict = {"project": f"{project}.1", "label_config": config, "tasks": tasks}
    assert app.test_client().post("/predict", json=predict).status_code == 503

    out = run_refinement(settings, redis_conn, project, engine=engine)
    assert out["status"] == "repaired" and out["lost_bodies"] == {"label": body.name}, out
    assert out["kind"] == "label:without-lost-head" and "tuned" in out["controls"]["label"], out  # due again
    served = registry.current(project, lineage)
    assert served.label == out["model_version"] != broken.label and served.parent == broken.label
    assert served.recipe("label").head is None and served.recipe("label").prompt == broken.recipe("label").prompt
    r = app.test_client().post("/predict", json=predict)
    assert r.status_code == 200 and {p["model_version"] for p in r.json["results"]} == {served.label}, r.json
