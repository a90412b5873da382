"""/metrics from a real gunicorn with two workers and a real RQ worker sharing one
PROMETHEUS_MULTIPROC_DIR (as `serve` runs them): requests summed across the web workers, and the
jobs the RQ worker ran, read by whichever web worker answers the scrape."""
from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
import requests
from prometheus_client.mmap_dict import MmapedDict
from prometheus_client.parser import text_string_to_metric_families
from rq import Queue
from rq.serializers import JSONSerializer

from tests.conftest import ROOT

pytestmark = [pytest.mark.service, pytest.mark.model]

REFINE = "backend.refinement.scheduler.refine_project"


def value(text: str, name: str, **labels) -> float:
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            if s.name == name and s.labels == labels:
                return s.value
    return 0.0


def health_requests_by_pid(metrics_dir: Path) -> dict[int, float]:
    """What each process's own file holds for GET /health: which worker served how many."""
    counts = {}
    for path in metrics_dir.glob("counter_*.db"):
        for key, n, _ts, _pos in MmapedDict.read_all_values_from_file(str(path)):
            _metric, name, labels, _help = json.loads(key)
            if name == "llmlb_http_requests_total" and labels == {"endpoint": "ml.health", "status": "200"}:
                counts[int(path.stem.split("_")[-1])] = n
    return counts


@pytest.fixture(scope="module")
def stack(server_factory, redis_url, tmp_path_factory):
    metrics_dir = tmp_path_factory.mktemp("prometheus")
    env = {"WEB_WORKERS": "2", "WEB_THREADS": "4", "LLM_N_THREADS": "1", "REDIS_URL": redis_url,
           "RQ_QUEUE_NAME": f"metrics-{uuid.uuid4().hex[:8]}", "PROMETHEUS_MULTIPROC_DIR": str(metrics_dir),
           "BASIC_AUTH_USER": "", "BASIC_AUTH_PASS": "", "LABEL_STUDIO_URL": "", "LABEL_STUDIO_API_KEY": ""}
    return server_factory(env), env, metrics_dir


def scrape(url: str) -> str:
    r = requests.get(url + "/metrics", timeout=10)
    assert r.status_code == 200
    return r.text


def test_requests_are_summed_across_both_gunicorn_workers(stack):
    server, _env, metrics_dir = stack
    before = value(scrape(server.url), "llmlb_http_requests_total", endpoint="ml.health", status="200")
    sent = 0
    with ThreadPoolExecutor(8) as pool:  # a connection per request: either worker may accept it
        while sent < 2000:
            codes = list(pool.map(lambda _: requests.get(server.url + "/health", timeout=10).status_code, range(50)))
            assert codes == [200] * 50
            sent += 50
            if len(health_requests_by_pid(metrics_dir)) == 2:
                break
    by_pid = health_requests_by_pid(metrics_dir)
    assert len(by_pid) == 2, by_pid  # both workers served some
    for _ in range(4):  # each scrape is answered by either worker: every one sees the same sums
        text = scrape(server.url)
        assert value(text, "llmlb_http_requests_total", endpoint="ml.health", status="200") - before == sent
        assert value(text, "llmlb_http_request_duration_seconds_count", route="/health", method="GET",
                     status="200") - before == sent


def test_the_engine_is_ready_once_every_worker_has_loaded_it(stack):
    """llmlb_engine_ready is the lowest of the live web workers' own values: 1 only once each has
    loaded its model and served a request since (on a loaded machine the second may take a while)."""
    server, _env, _metrics_dir = stack
    deadline = time.monotonic() + 120
    while True:
        with ThreadPoolExecutor(8) as pool:
            list(pool.map(lambda _: requests.get(server.url + "/health", timeout=10), range(40)))
        if value(scrape(server.url), "llmlb_engine_ready") == 1:
            break
        assert time.monotonic() < deadline, "a web worker never reported its model loaded"
        time.sleep(1)


def test_job_metrics_recorded_by_the_worker_reach_the_web(stack, redis_conn, tmp_path):
    server, env, _metrics_dir = stack
    queue = Queue(env["RQ_QUEUE_NAME"], connection=redis_conn, serializer=JSONSerializer)
    queue.enqueue(REFINE, 7)  # no label config known: the refinement ends "skipped" without the model
    queue.enqueue(REFINE, "not-a-project")  # raises: "failed"
    text = scrape(server.url)
    assert value(text, "llmlb_queue_jobs", queue=queue.name, state="queued") == 2

    worker_env = {**os.environ, **env, "MODEL_DIR": str(tmp_path)}
    done = subprocess.run([sys.executable, "-m", "backend", "worker", "--burst"], env=worker_env, cwd=ROOT,
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]

    text = scrape(server.url)
    assert value(text, "llmlb_jobs_total", kind="refinement", status="skipped") == 1
    assert value(text, "llmlb_jobs_total", kind="refinement", status="failed") == 1
    assert value(text, "llmlb_job_duration_seconds_count", kind="refinement", status="skipped") == 1
    assert value(text, "llmlb_queue_jobs", queue=queue.name, state="queued") == 0
    assert value(text, "llmlb_queue_jobs", queue=queue.name, state="failed") == 1
    assert 'llmlb_versions_published_total{status="published"} 0.0' in text
