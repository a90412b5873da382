"""TASKS_CREATED with PREANNOTATE_ON_IMPORT: /webhook only queues RQ jobs that carry ids (JSON),
answers at once, and GET /jobs lists them (Flask app over real Redis; the worker side runs
against a real Label Studio in tests/e2e)."""
import copy
import time
import uuid

from rq import Queue
from rq.serializers import JSONSerializer

from backend.app import create_app
from backend.engines.scripted import ScriptedEngine
from backend.preannotation.import_jobs import JOB_FUNC, TASKS_PER_JOB
from backend.settings import Settings
from tests.conftest import load_fixture

LS_API = {"LABEL_STUDIO_URL": "http://127.0.0.1:9", "LABEL_STUDIO_API_KEY": "unused"}


def _client(tmp_path, redis_conn, redis_url, **env):
    queue = f"q-{uuid.uuid4().hex[:6]}"
    settings = Settings.from_env({"MODEL_DIR": str(tmp_path), "REDIS_URL": redis_url, "RQ_QUEUE_NAME": queue, **env})
    app = create_app(settings, engine_factory=ScriptedEngine, redis_conn=redis_conn)
    return app.test_client(), Queue(queue, connection=redis_conn, serializer=JSONSerializer)


def test_new_tasks_queue_id_only_jobs_and_the_webhook_answers_at_once(tmp_path, redis_conn, redis_url):
    client, queue = _client(tmp_path, redis_conn, redis_url, PREANNOTATE_ON_IMPORT="true", **LS_API)
    body = load_fixture("webhook-tasks-created.json")
    body["tasks"] = [dict(copy.deepcopy(body["tasks"][0]), id=i) for i in range(1, TASKS_PER_JOB + 3)]
    t0 = time.monotonic()
    r = client.post("/webhook", json=body)
    assert time.monotonic() - t0 < 0.5
    assert r.status_code == 200 and r.json["status"] == "accepted" and r.json["tasks"] == TASKS_PER_JOB + 2
    jobs = [queue.fetch_job(i) for i in r.json["jobs"]]
    assert [j.func_name for j in jobs] == [JOB_FUNC, JOB_FUNC]
    assert jobs[0].args == [1, list(range(1, TASKS_PER_JOB + 1))]  # JSON: project id and task ids only
    assert jobs[1].args == [1, [TASKS_PER_JOB + 1, TASKS_PER_JOB + 2]]
    listed = client.get("/jobs?project=1").json["preannotation"]
    assert {j["id"] for j in listed} == set(r.json["jobs"]) and {j["status"] for j in listed} == {"queued"}


def test_new_tasks_are_ignored_when_the_setting_is_off(tmp_path, redis_conn, redis_url):
    client, queue = _client(tmp_path, redis_conn, redis_url)
    r = client.post("/webhook", json=load_fixture("webhook-tasks-created.json"))
    assert r.status_code == 200 and r.json["status"] == "ignored" and len(queue) == 0


def test_malformed_tasks_created_is_400(tmp_path, redis_conn, redis_url):
    client, _ = _client(tmp_path, redis_conn, redis_url, PREANNOTATE_ON_IMPORT="true", **LS_API)
    body = load_fixture("webhook-tasks-created.json")
    body["tasks"] = [{"id": "seven"}]
    r = client.post("/webhook", json=body)
    assert r.status_code == 400 and r.json["field"] == "tasks[0].id"
