"""A real gunicorn, started with the command `serve` uses, takes webhooks under WEBHOOK_SECRET and
writes the secret to neither its access log nor its error log (debug level: the path of every
request), nor to any response body. The engine is LLM_BACKEND=openai at an address nothing listens
on: it loads without a model and is never called, so no GGUF is needed."""
import os
import subprocess
import time

import pytest
import requests

from tests.conftest import ROOT, free_port, load_fixture

pytestmark = pytest.mark.service

SECRET = "Tq3v_9xZ-Lr2Wm8kPb4N"
AUTH = ("ls", "a-password-of-24-chars!!")


@pytest.fixture
def gunicorn(tmp_path, redis_url, redis_conn):
    from backend.settings import Settings
    from backend.supervisor import gunicorn_command

    env = dict(os.environ, HOST="127.0.0.1", PORT=str(free_port()), MODEL_DIR=str(tmp_path), REDIS_URL=redis_url,
               LLM_BACKEND="openai", OPENAI_BASE_URL=f"http://127.0.0.1:{free_port()}/v1", LLM_MODEL="unused",
               WEBHOOK_SECRET=SECRET, BASIC_AUTH_USER=AUTH[0], BASIC_AUTH_PASS=AUTH[1], LOG_LEVEL="DEBUG")
    settings = Settings.from_env(env)
    log_path = tmp_path / "gunicorn.log"
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(gunicorn_command(settings) + ["--log-level", "debug"], env=env, cwd=ROOT,
                                stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{settings.port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            assert proc.poll() is None, log_path.read_text()[-3000:]
            try:
                if requests.get(url + "/health", timeout=1).ok:
                    break
            except requests.RequestException:
                pass
            assert time.monotonic() < deadline, log_path.read_text()[-3000:]
            time.sleep(0.2)
        yield url, proc, log_path
    finally:
        if proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


def test_the_webhook_secret_is_in_no_log_line_and_no_response(gunicorn):
    url, proc, log_path = gunicorn
    webhook = load_fixture("webhook-annotation-created.json")
    bodies = []
    r = requests.post(f"{url}/{SECRET}/webhook", json=webhook, timeout=5)
    assert r.status_code == 200 and r.json()["status"] == "accepted", r.text
    bodies.append(r.text)
    for r, status in (
        (requests.post(f"{url}/webhook", json=webhook, timeout=5), 401),
        (requests.post(f"{url}/{SECRET}/webhook", data=b"{}", headers={"Content-Type": "text/plain"}, timeout=5), 415),
        (requests.post(f"{url}/{SECRET}/predict", json={}, timeout=5), 401),
        (requests.get(f"{url}/{SECRET}/no-such-route?next=/{SECRET}/", timeout=5), 404),
    ):
        assert r.status_code == status, r.text
        bodies.append(r.text)
    # a body streamed without Content-Length (chunked) is held to WEBHOOK_MAX_BYTES as well
    chunk = b" " * 65536
    r = requests.post(f"{url}/{SECRET}/webhook", data=(chunk for _ in range(17)),
                      headers={"Content-Type": "application/json"}, timeout=10)
    assert r.status_code == 413 and r.json()["error"] == "payload_too_large"
    bodies.append(r.text)

    proc.terminate()
    proc.wait(timeout=15)
    text = log_path.read_text()
    assert '"POST /***/webhook HTTP/1.1" 200' in text  # the access log line, redacted
    assert "[DEBUG] POST /***/webhook" in text  # the error log's per-request line, redacted
    assert "/***/no-such-route?next=/***/" in text
    assert SECRET not in text
    assert all(SECRET not in body for body in bodies)
