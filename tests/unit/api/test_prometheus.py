"""/metrics in one process (no PROMETHEUS_MULTIPROC_DIR): the app's own registry, route labels
that never carry a raw path or the webhook secret, the queue read from Redis at scrape time and
left out when Redis is down, and the job series the worker records."""
from __future__ import annotations

import pytest
import redis
from prometheus_client import CollectorRegistry
from prometheus_client.parser import text_string_to_metric_families
from rq import Queue, Retry
from rq.serializers import JSONSerializer

from backend.app import create_app
from backend.engines.scripted import ScriptedEngine
from backend.job_metrics import JobMetrics
from backend.settings import Settings
from backend.worker import MeteredWorker
from tests.conftest import free_port, load_fixture

SECRET = "a-webhook-secret-of-24-ch"


def samples(text: str) -> dict[tuple, float]:
    """(sample name, sorted labels) → value."""
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for family in text_string_to_metric_families(text) for s in family.samples}


def value(text: str, name: str, **labels) -> float:
    return samples(text).get((name, tuple(sorted(labels.items()))), 0.0)


@pytest.fixture
def make_app(tmp_path, redis_conn, redis_url):
    def make(conn=None, **overrides):
        settings = Settings.from_env({"MODEL_DIR": str(tmp_path), "REDIS_URL": redis_url}, **overrides)
        return create_app(settings, engine_factory=ScriptedEngine, redis_conn=conn or redis_conn)

    return make


def test_requests_are_counted_per_app_by_route_and_status(make_app):
    first, second = make_app().test_client(), make_app().test_client()  # no duplicate registration
    body = load_fixture("predict-choices-single.json")
    for _ in range(3):
        assert first.post("/predict", json=body).status_code == 200
    first.get("/versions/v9/report")
    text = first.get("/metrics").get_data(as_text=True)
    assert value(text, "llmlb_http_requests_total", endpoint="ml.predict", status="200") == 3
    assert value(text, "llmlb_http_request_duration_seconds_count", route="/predict", method="POST", status="200") == 3
    assert value(text, "llmlb_http_request_duration_seconds_count", route="/versions/<label>/report",
                 method="GET", status="404") == 1
    assert value(text, "llmlb_tasks_predicted_total") == 3 * len(body["tasks"])
    assert value(text, "llmlb_predict_calls_total") == 3
    assert value(text, "llmlb_predict_duration_seconds_count") == 3
    assert value(text, "llmlb_engine_ready") == 1
    assert value(second.get("/metrics").get_data(as_text=True), "llmlb_tasks_predicted_total") == 0


def test_route_labels_carry_neither_raw_paths_nor_the_secret(make_app):
    client = make_app(webhook_secret=SECRET).test_client()
    assert client.get(f"/{SECRET}/health").status_code == 200
    assert client.get("/no/such/path-with-a-token-abc").status_code == 404
    assert client.open("/health", method="BREW").status_code == 405
    text = client.get("/metrics").get_data(as_text=True)
    assert SECRET not in text and "abc" not in text and "BREW" not in text
    count = "llmlb_http_request_duration_seconds_count"
    assert value(text, count, route="/health", method="GET", status="200") == 1
    assert value(text, count, route="<unmatched>", method="GET", status="404") == 1
    assert value(text, count, route="<unmatched>", method="other", status="405") == 1


def test_queue_sizes_are_read_at_scrape_time(make_app, redis_conn):
    app = make_app()
    queue = Queue(app.extensions["llmlb.settings"].rq_queue_name, connection=redis_conn, serializer=JSONSerializer)
    for project in (1, 2):
        queue.enqueue("backend.refinement.scheduler.refine_project", project)
    text = app.test_client().get("/metrics").get_data(as_text=True)
    assert value(text, "llmlb_queue_jobs", queue=queue.name, state="queued") == 2
    assert value(text, "llmlb_queue_jobs", queue=queue.name, state="failed") == 0
    assert ("llmlb_queue_jobs", (("queue", queue.name), ("state", "started"))) in samples(text)


def test_metrics_answer_without_the_queue_while_redis_is_down(make_app):
    down = redis.Redis(host="127.0.0.1", port=free_port(), socket_connect_timeout=0.2)
    r = make_app(conn=down).test_client().get("/metrics")
    assert r.status_code == 200
    assert "llmlb_queue_jobs" not in r.get_data(as_text=True)
    assert "llmlb_http_requests_total" in r.get_data(as_text=True)


@pytest.mark.parametrize("status, published", [("published", 1), ("refreshed", 1), ("repaired", 1), ("kept", 0),
                                                     ("unchanged", 0)])
def test_a_refinement_outcome_counts_a_published_version_only_when_it_published(status, published):
    registry = CollectorRegistry()
    JobMetrics(registry).observe("refinement", status, 12.5)
    assert registry.get_sample_value("llmlb_jobs_total", {"kind": "refinement", "status": status}) == 1
    assert registry.get_sample_value("llmlb_job_duration_seconds_sum", {"kind": "refinement", "status": status}) == 12.5
    assert (registry.get_sample_value("llmlb_versions_published_total", {"status": status}) or 0) == published


def refine_project(outcome: str) -> dict:
    """Stands in for the refinement entry point (same name, so the same `kind`)."""
    if outcome == "raise":
        raise RuntimeError("the job failed")
    return {"status": outcome}


def test_the_worker_records_each_attempt_after_its_horse_exits(redis_conn):
    queue = Queue("metrics-unit", connection=redis_conn, serializer=JSONSerializer)
    func = f"{__name__}.refine_project"
    queue.enqueue(func, "published")
    queue.enqueue(func, "kept")
    queue.enqueue(func, "raise")
    queue.enqueue(func, "raise", retry=Retry(max=1, interval=3600))
    registry = CollectorRegistry()
    worker = MeteredWorker([queue], connection=redis_conn, serializer=JSONSerializer, job_metrics=JobMetrics(registry))
    worker.work(burst=True)

    def jobs(status):
        return registry.get_sample_value("llmlb_jobs_total", {"kind": "refinement", "status": status})

    assert [jobs(s) for s in ("published", "kept", "failed", "retried")] == [1, 1, 1, 1]
    assert registry.get_sample_value("llmlb_versions_published_total", {"status": "published"}) == 1
    assert registry.get_sample_value("llmlb_job_duration_seconds_count", {"kind": "refinement", "status": "kept"}) == 1
