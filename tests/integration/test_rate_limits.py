"""Per-project budgets in a real Redis: forced refinement jobs and pre-annotated imports."""
from backend.app import create_app
from backend.engines.scripted import ScriptedEngine
from backend.preannotation import import_jobs
from backend.refinement.scheduler import FORCED_PER_HOUR
from backend.settings import Settings
from tests.conftest import load_fixture


def _app(tmp_path, redis_conn, redis_url, **overrides):
    settings = Settings.from_env({"MODEL_DIR": str(tmp_path), "REDIS_URL": redis_url}, refine_min_new=1000,
                                 refine_delay_s=3600, **overrides)
    return create_app(settings, engine_factory=ScriptedEngine, redis_conn=redis_conn, start_engine=False)


def test_forced_jobs_beyond_the_hourly_budget_are_debounced(tmp_path, redis_conn, redis_url):
    scheduler = _app(tmp_path, redis_conn, redis_url).extensions["llmlb.scheduler"]
    queued = []
    for i in range(FORCED_PER_HOUR):
        job = scheduler.notify(51, changes=0, force=True, reason="START_TRAINING")
        assert job["status"] == "queued"
        queued.append(job["id"])
        redis_conn.delete("llmlb:project:51:next-job")  # as if the worker had started it
    over = scheduler.notify(51, changes=0, force=True, reason="START_TRAINING")
    assert over["status"] == "scheduled" and "debounced" in over["reason"]
    again = scheduler.notify(51, changes=0, force=True, reason="START_TRAINING")
    assert again["id"] == over["id"]  # joins the waiting job: the budget is not spent twice
    assert scheduler.notify(52, changes=0, force=True, reason="START_TRAINING")["status"] == "queued"  # per project


def test_imports_beyond_the_hourly_task_budget_get_429_naming_the_fix(tmp_path, redis_conn, redis_url, monkeypatch):
    monkeypatch.setattr(import_jobs, "TASKS_PER_HOUR", 5)
    client = _app(tmp_path, redis_conn, redis_url, preannotate_on_import=True, label_studio_url="http://127.0.0.1:9",
                  label_studio_api_key="k" * 40).test_client()  # jobs are only queued: no worker reads the API
    body = load_fixture("webhook-tasks-created.json")
    project = body["project"]["id"]
    n_tasks = len(body["tasks"])
    accepted = 0
    while accepted + n_tasks <= 5:
        r = client.post("/webhook", json=body)
        assert r.status_code == 200 and r.json["status"] == "accepted", r.json
        accepted += n_tasks
    r = client.post("/webhook", json=body)
    assert r.status_code == 429 and r.json["field"] == "tasks" and "preannotate" in r.json["message"]
    assert 0 < int(r.headers["Retry-After"]) <= 3600
    assert len(client.get(f"/jobs?project={project}").json["preannotation"]) == accepted // n_tasks
