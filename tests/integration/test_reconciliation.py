"""Ground truth checked against the Label Studio API: a job never trains on what Label Studio did
not confirm, and one periodic reconciliation is scheduled at a time (real Redis, real RQ)."""
import pytest
from rq.job import Job
from rq.serializers import JSONSerializer

from backend.app import create_app
from backend.engines.scripted import ScriptedEngine
from backend.errors import LabelStudioUnavailable
from backend.evaluation.datasets import load_dataset
from backend.refinement.reconciliation import JOB_FUNC, schedule_reconciliation
from backend.refinement.scheduler import refine_project
from backend.settings import Settings
from backend.store.ground_truth import GroundTruthStore
from backend.store.redis import key
from backend.worker import make_queue
from tests.conftest import DATASETS, free_port
from tests.ls_payloads import annotation_event

DATA = load_dataset(DATASETS / "sentence_polarity" / "test.jsonl", limit=20)
PROJECT = 41


@pytest.fixture
def env(tmp_path, redis_url, monkeypatch):
    values = {"MODEL_DIR": str(tmp_path), "REDIS_URL": redis_url, "REFINE_DELAY": "3600",
              "LABEL_STUDIO_URL": f"http://127.0.0.1:{free_port()}",  # nothing listens there
              "LABEL_STUDIO_API_KEY": "k" * 40, "RECONCILE_INTERVAL": "600"}
    for name, value in values.items():
        monkeypatch.setenv(name, value)
    return values


def test_a_job_does_not_train_when_label_studio_cannot_confirm_the_ground_truth(env, redis_conn):
    app = create_app(Settings.from_env(env), engine_factory=ScriptedEngine, redis_conn=redis_conn, start_engine=False)
    client = app.test_client()
    for i in range(len(DATA.texts)):
        assert client.post("/webhook", json=annotation_event(DATA, i, project=PROJECT)).status_code == 200
    pending = int(redis_conn.get(key("project", PROJECT, "pending")))
    assert pending == len(DATA.texts)

    with pytest.raises(LabelStudioUnavailable, match="reconciliation with Label Studio failed"):
        refine_project(PROJECT)
    assert GroundTruthStore(redis_conn, PROJECT).count() == len(DATA.texts)  # kept, not replaced by nothing
    assert int(redis_conn.get(key("project", PROJECT, "pending"))) == pending  # still to learn from
    assert not redis_conn.exists(key("project", PROJECT, "refine-lock"))
    versions = client.get(f"/versions?project={PROJECT}").json
    assert versions["details"] == []  # nothing published


def test_one_periodic_reconciliation_is_scheduled_at_a_time(env, redis_conn):
    settings = Settings.from_env(env)
    queue = make_queue(settings, redis_conn)
    first = schedule_reconciliation(redis_conn, queue, settings)
    assert schedule_reconciliation(redis_conn, queue, settings) == first
    assert queue.scheduled_job_registry.get_job_ids() == [first]
    assert Job.fetch(first, connection=redis_conn, serializer=JSONSerializer).func_name == JOB_FUNC
    assert schedule_reconciliation(redis_conn, queue, settings.with_overrides(reconcile_interval_s=0)) is None
    no_api = settings.with_overrides(label_studio_url="", label_studio_api_key="")
    redis_conn.flushdb()
    assert schedule_reconciliation(redis_conn, queue, no_api) is None
    assert queue.scheduled_job_registry.get_job_ids() == []
