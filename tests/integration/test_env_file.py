"""A start configured by a .env file alone: `python -m backend serve` in a directory holding only
.env, with none of the settings in the environment, serves on the .env's port, guards /webhook
with the .env's secret and redacts that secret in gunicorn's logs (the supervisor hands the file
on to its children)."""
import os
import signal
import subprocess
import sys
import time

import pytest
import requests

from tests.conftest import MODEL_DIR, ROOT, free_port, load_fixture

pytestmark = [pytest.mark.service, pytest.mark.model]

SECRET = "only-in-the-dotenv-file-42"


def test_serve_takes_every_setting_from_the_env_file(tmp_path, redis_url, engine):
    port = free_port()
    (tmp_path / ".env").write_text(
        f"PORT={port}\nMODEL_DIR={MODEL_DIR}\nREDIS_URL={redis_url}\nWEBHOOK_SECRET={SECRET}\n"
        "LLM_N_THREADS=1\nLOG_LEVEL=DEBUG\nWORKERS=1\nREFINE_MINNEW=3\n")
    env = {"PATH": os.environ["PATH"], "HOME": os.environ.get("HOME", str(tmp_path)), "PYTHONPATH": str(ROOT),
           "PYTHONUNBUFFERED": "1"}
    log_path = tmp_path / "serve.log"
    with open(log_path, "wb") as log:
        proc = subprocess.Popen([sys.executable, "-m", "backend", "serve"], cwd=tmp_path, env=env,
                                stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline:
            assert proc.poll() is None, log_path.read_text()[-3000:]
            try:
                if requests.get(url + "/health", timeout=1).json().get("model_state") == "ready":
                    break
            except requests.RequestException:
                time.sleep(0.3)
        else:
            pytest.fail("serve did not answer on the .env's PORT: " + log_path.read_text()[-3000:])
        event = load_fixture("webhook-annotation-created.json")
        assert requests.post(f"{url}/webhook", json=event, timeout=5).status_code == 401  # only under the secret
        assert requests.post(f"{url}/{SECRET}/webhook", json=event, timeout=5).status_code == 200
        time.sleep(2)  # gunicorn writes its access line after the response
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(timeout=30)
    text = log_path.read_text()
    assert "POST /***/webhook" in text, text[-4000:]
    assert SECRET not in text
    assert "no setting is called REFINE_MINNEW" in text  # a typo in the file is reported, not ignored
