"""What /predict scores with the current version, the project's next job reads instead of scoring it
again: the real Flask app, the embedded model and Redis. Label Studio predicts a task when an
annotator opens it, so the items a job judges the current version on were mostly scored already."""
import numpy as np
import pytest
import redis

from backend.engines.factory import engine_id
from backend.evaluation.datasets import load_dataset
from backend.labeling.calibration import Calibrator
from backend.labeling.label_config import parse_label_config
from backend.labeling.model_version import ModelVersion
from backend.labeling.prompt import Demo, PromptVersion
from backend.labeling.recipe import ControlRecipe
from backend.labeling.service import LabelingService
from backend.refinement.job import run_refinement
from backend.settings import Settings
from backend.store import predicted_logits
from backend.store.logit_cache import LogitCache
from backend.store.predicted_logits import PredictedLogits, drop_other_versions
from backend.store.versions import VersionRegistry
from tests.conftest import DATASETS, free_port
from tests.annotated_project import annotate

pytestmark = pytest.mark.model

PROJECT = 46
DATA = load_dataset(DATASETS / "subjectivity" / "train.jsonl", limit=30)
POOL = 10  # the version's demonstrations: the first items
CONTROL = parse_label_config(DATA.label_config()).controls[0]


def _settings(redis_url: str, tmp_path) -> Settings:
    return Settings.from_env({"MODEL_DIR": str(tmp_path), "REDIS_URL": redis_url, "REFINE_MAX_SHOTS": "0",
                              "REFINE_REASONING_SAMPLES": "0", "REFINE_REWRITE_ROUNDS": "0", "REFINE_TUNE_SECONDS": "0",
                              "REFINE_MAX_SECONDS": "7200", "TEMPLATE_CHOICE": "false"})


def _nearest_demo_version(redis_conn, settings: Settings) -> ModelVersion:
    """A published version whose prompt shows each task its 2 nearest demonstrations of the
    first POOL items, with every item stored as ground truth."""
    label_task, events = annotate(redis_conn, DATA, PROJECT)
    pool = tuple(Demo(DATA.texts[i], (DATA.labels[DATA.gold[i]],)) for i in range(POOL))
    registry = VersionRegistry(redis_conn, engine_id(settings), settings.model_dir, ModelVersion)
    return registry.publish(PROJECT, ModelVersion(
        label="", lineage=label_task.config_hash, kind="label:4-nearest", gt_count=POOL,
        controls={"label": ControlRecipe(PromptVersion(name="v1", pool=pool, nearest=2),
                                         Calibrator.identity(len(DATA.labels)))},
        trained_on=tuple(e["task"]["id"] for e in events[:POOL])))


def test_a_job_judges_the_current_version_on_what_predict_scored_with_it(app_client, redis_conn, redis_url, engine,
                                                                         tmp_path):
    settings = _settings(redis_url, tmp_path)
    version = _nearest_demo_version(redis_conn, settings)
    new = range(POOL, len(DATA.texts))  # opened by annotators (predicted), then annotated
    r = app_client.post("/predict", json={"label_config": DATA.label_config(), "project": f"{PROJECT}.1795402611",
                                          "tasks": [{"id": 1000 + i, "data": {"text": DATA.texts[i]}} for i in new]})
    assert r.status_code == 200 and {p["model_version"] for p in r.json["results"]} == {version.label}
    kept = PredictedLogits(redis_conn, PROJECT, version.label, engine_id(settings))
    assert redis_conn.hlen(kept.key) == len(new) and redis_conn.ttl(kept.key) > 0

    out = run_refinement(settings, redis_conn, PROJECT, engine=engine)

    assert out["current"] == version.label
    # the new items, each seen with the same 2 nearest demos as at /predict, were not scored again
    assert out["logit_cache"]["predicted"] == len(new), out["logit_cache"]
    # what /predict kept goes with its version once the job ends with another
    assert redis_conn.exists(kept.key) == (out["model_version"] == version.label)
    # and the items are in the job's cache now: the next job finds them without /predict's entries
    redis_conn.delete(kept.key)
    service = LabelingService(engine, logit_cache=LogitCache(redis_conn, PROJECT, engine_id(settings)))
    prompt = version.recipe("label").prompt
    texts = [DATA.texts[i] for i in new]
    assert service.cached(CONTROL, prompt, texts, service.task_demos(prompt, texts, leave_out_self=True)).all()


def test_predict_keeps_the_logits_of_the_version_only_not_of_a_typed_instruction(app_client, redis_conn, redis_url,
                                                                                 tmp_path):
    config = ('<View><Text name="text" value="$text"/><TextArea name="prompt" toName="text" editable="true"/>'
              '<Choices name="label" toName="text"><Choice value="yes"/><Choice value="no"/></Choices></View>')
    typed = [{"id": "p1", "from_name": "prompt", "to_name": "text", "type": "textarea",
              "value": {"text": ["Is the writer stating an opinion?"]}}]
    body = {"label_config": config, "project": f"{PROJECT}.1795402611",
            "tasks": [{"id": 7, "data": {"text": DATA.texts[0]}}]}
    r = app_client.post("/predict", json={**body, "params": {"context": {"result": typed}}})
    assert r.status_code == 200
    pattern = f"llmlb:project:{PROJECT}:predicted-logits:*"
    assert list(redis_conn.scan_iter(pattern)) == []
    assert app_client.post("/predict", json=body).status_code == 200
    (stored,) = redis_conn.scan_iter(pattern)
    assert redis_conn.hlen(stored) == 1
    assert app_client.post("/predict", json={**body, "project": None}).status_code == 200  # no project: nowhere to keep
    assert len(list(redis_conn.scan_iter("llmlb:project:*:predicted-logits:*"))) == 1


def test_kept_logits_are_read_back_exactly_and_stop_at_the_cap(redis_conn, monkeypatch):
    kept = PredictedLogits(redis_conn, PROJECT, "v", "gemma")
    logits = np.array([0.1, -2.5, 1e-300])
    state = np.linspace(-3.0, 3.0, 640, dtype=np.float32)
    kept.put_many({b"a": (logits, True), b"b": (logits * 2, False, state)})
    (a, truncated, no_state), (b, cut, b_state), missing = kept.get_many([b"a", b"b", b"c"])
    assert np.array_equal(a, logits) and truncated and np.array_equal(b, logits * 2) and not cut and missing is None
    assert no_state is None and b_state.dtype == np.float32 and np.array_equal(b_state, state)
    assert kept.holds([b"a", b"c"]) == [True, False]
    monkeypatch.setattr(predicted_logits, "MAX_ENTRIES", 2)
    kept.put_many({b"c": (logits, False)})
    assert kept.holds([b"c"]) == [False] and redis_conn.hlen(kept.key) == 2


def test_a_redis_that_cannot_be_reached_costs_the_kept_logits_not_the_prediction():
    gone = redis.Redis(host="127.0.0.1", port=free_port(), socket_connect_timeout=0.5)
    kept = PredictedLogits(gone, PROJECT, "v", "gemma")
    kept.put_many({b"a": (np.zeros(2), False)})  # logged, not raised
    assert kept.get_many([b"a"]) == [None]


def test_a_job_s_end_drops_what_other_versions_kept(redis_conn):
    kept = ((PROJECT, "e.abc.v1"), (PROJECT, "e.abc.v2"), (PROJECT, "e.def.v1"), (PROJECT + 1, "e.abc.v1"))
    for project, version in kept:
        PredictedLogits(redis_conn, project, version, "gemma").put_many({b"a": (np.zeros(2), False)})
    assert drop_other_versions(redis_conn, PROJECT, "e.abc.v2") == 2
    assert sorted(k.decode() for k in redis_conn.scan_iter("llmlb:project:*:predicted-logits:*")) == [
        f"llmlb:project:{PROJECT}:predicted-logits:e.abc.v2", f"llmlb:project:{PROJECT + 1}:predicted-logits:e.abc.v1"]
