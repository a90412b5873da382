"""Redis restarted in the middle of a stream of webhooks, on a redis-server of the test's own with
AOF (the persistence the embedded Redis uses): every acknowledged annotation survives the restart,
every one that could not be stored was answered 503 (never 500, never a 2xx), and /health says
what is wrong within Label Studio's 1 s while Redis is away."""
import subprocess
import threading
import time

import pytest
import redis
import requests

from backend.evaluation.datasets import load_dataset
from backend.store.ground_truth import GroundTruthStore
from tests.conftest import DATASETS, free_port
from tests.ls_payloads import annotation_event

pytestmark = [pytest.mark.service, pytest.mark.model]

PROJECT = 31
DATA = load_dataset(DATASETS / "sentence_polarity" / "test.jsonl", limit=400)


class RedisServer:
    def __init__(self, directory):
        self.port = free_port()
        self.cmd = ["redis-server", "--port", str(self.port), "--bind", "127.0.0.1", "--dir", str(directory),
                    "--appendonly", "yes", "--appendfsync", "everysec", "--save", ""]
        self.proc = None
        self.start()

    def start(self) -> None:
        self.proc = subprocess.Popen(self.cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        client = redis.Redis(port=self.port)
        for _ in range(100):
            try:
                if client.ping():
                    return
            except redis.ConnectionError:
                time.sleep(0.05)
        raise RuntimeError("redis-server did not start")

    def stop(self) -> None:
        self.proc.terminate()  # SIGTERM: what a container runtime or systemd sends on restart
        self.proc.wait(timeout=10)


@pytest.fixture
def redis_server(tmp_path):
    server = RedisServer(tmp_path)
    yield server
    if server.proc.poll() is None:
        server.stop()


def test_acknowledged_annotations_survive_a_redis_restart_and_the_rest_get_503(redis_server, server_factory):
    backend = server_factory({"REDIS_URL": f"redis://127.0.0.1:{redis_server.port}/0", "REFINE_DELAY": "3600"})
    outcomes: dict[int, int] = {}
    sent = threading.Event()

    def stream():
        session = requests.Session()
        for i in range(len(DATA.texts)):
            body = annotation_event(DATA, i, project=PROJECT)
            try:
                outcomes[i] = session.post(backend.url + "/webhook", json=body, timeout=10).status_code
            except requests.RequestException:
                outcomes[i] = 0
            if i == 100:
                sent.set()
            time.sleep(0.01)  # a stream that outlasts the outage, so that it also shows the recovery

    thread = threading.Thread(target=stream)
    thread.start()
    assert sent.wait(60)
    redis_server.stop()
    healths = []
    for _ in range(3):  # while Redis is away
        t0 = time.monotonic()
        r = requests.get(backend.url + "/health", timeout=1)
        healths.append((r.status_code, r.json(), time.monotonic() - t0))
        time.sleep(0.5)
    redis_server.start()
    thread.join(120)

    codes = set(outcomes.values())
    unexpected = [line for line in backend.log_path.read_text(errors="replace").splitlines()
                  if "unexpected error" in line or "Error:" in line and "store_unavailable" not in line]
    assert codes <= {200, 503}, (codes, unexpected[-10:])
    refused = [i for i, code in outcomes.items() if code == 503]
    assert refused, "Redis was down for 1.5 s: some webhooks must have been refused"
    acknowledged = {1000 + i for i, code in outcomes.items() if code == 200}
    conn = redis.Redis(port=redis_server.port)
    stored = {item.task_id for item in GroundTruthStore(conn, PROJECT).items()}
    assert acknowledged <= stored, sorted(acknowledged - stored)[:10]
    timeline = "".join("." if outcomes[i] == 200 else "x" for i in sorted(outcomes))
    assert timeline.rstrip(".").count(".") >= 100 and timeline.endswith("." * 50), timeline  # back after the restart
    for status, body, seconds in healths:
        assert status == 503 and body["status"] == "DOWN" and body["redis"] != "ok" and seconds < 1
    r = requests.get(backend.url + "/health", timeout=1)
    assert r.status_code == 200 and r.json()["redis"] == "ok"
