"""`serve`: one command that starts everything a fresh machine needs and stops it all on Ctrl-C.

Order: the model is assembled (so the web workers only load it), the embedded Redis starts when
no REDIS_URL/REDIS_HOST is set, then gunicorn and one RQ worker run as child processes. The
simulation benchmark starts the same stack.
"""
from __future__ import annotations

import logging
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

from .engines.factory import prepare_model
from .settings import Settings, env_file_values
from .store.redis import EmbeddedRedis, external_url

log = logging.getLogger(__name__)


# The webhook secret is a path segment: this logger writes it as *** (the Dockerfile passes it too).
GUNICORN_LOGGER = "backend.api.access_log.RedactingLogger"


def gunicorn_command(settings: Settings) -> list[str]:
    return [
        sys.executable, "-m", "gunicorn",
        "--bind", f"{settings.host}:{settings.port}",
        "--workers", str(settings.web_workers),
        "--threads", str(settings.web_threads),
        "--worker-class", "gthread",
        "--timeout", "180",
        "--graceful-timeout", "10",
        "--access-logfile", "-",
        "--logger-class", GUNICORN_LOGGER,
        "--no-control-socket",
        "--config", "python:backend.supervisor",  # the hooks below
        "backend.wsgi:app",
    ]


# /metrics sums the values every process writes to files in this directory (prometheus_client's
# multiprocess mode): it must be set before any of them imports prometheus_client, and emptied
# at each start, or a restarted service would add up the old run's counters with its own.
METRICS_DIR_ENV = "PROMETHEUS_MULTIPROC_DIR"


def fresh_metrics_dir(model_dir: Path, configured: str | None = None) -> Path:
    """The operator's PROMETHEUS_MULTIPROC_DIR or MODEL_DIR/metrics, created, its *.db files removed."""
    path = Path(configured) if configured else Path(model_dir) / "metrics"
    path.mkdir(parents=True, exist_ok=True)
    for stale in path.glob("*.db"):
        stale.unlink(missing_ok=True)
    return path


# gunicorn reads this module as its config (`--config python:backend.supervisor`): of its names,
# only these three hooks are gunicorn settings (tests/unit/api/test_prometheus_multiprocess.py).
def on_starting(server) -> None:
    """In the gunicorn master, before a worker forks: a gunicorn started without `serve` (the
    tests, by hand) gets a private metrics directory, removed when it exits; with one set, its
    workers write there (with `serve`, beside the RQ worker)."""
    if os.environ.get(METRICS_DIR_ENV):
        os.makedirs(os.environ[METRICS_DIR_ENV], exist_ok=True)
    else:
        os.environ[METRICS_DIR_ENV] = server.llmlb_metrics_dir = tempfile.mkdtemp(prefix="llmlb-metrics-")


def child_exit(server, worker) -> None:
    """A dead worker's live gauges (llmlb_engine_ready) leave the sums; its counters stay."""
    from prometheus_client import multiprocess

    multiprocess.mark_process_dead(worker.pid)


def on_exit(server) -> None:
    private = getattr(server, "llmlb_metrics_dir", None)
    if private:
        shutil.rmtree(private, ignore_errors=True)


class Stack:
    """Web + worker (+ embedded Redis) as child processes; a context manager that stops them all."""

    def __init__(self, settings: Settings, env: dict[str, str] | None = None, log_file=None):
        self.settings = settings
        self.extra_env = env or {}
        self.log_file = log_file
        self.embedded: EmbeddedRedis | None = None
        self.children: list[subprocess.Popen] = []

    @property
    def url(self) -> str:
        return f"http://{self.settings.host}:{self.settings.port}"

    def __enter__(self) -> "Stack":
        s = self.settings
        if s.llm_backend == "llamacpp":
            prepare_model(s)
        # the environment wins over .env, and an empty variable counts as unset, as in Settings
        env = env_file_values(os.environ)
        env.update((k, v) for k, v in os.environ.items() if v.strip() or k not in env)
        env = dict(env, HOST=s.host, PORT=str(s.port), MODEL_DIR=str(s.model_dir), **self.extra_env)
        if external_url(s) is None:
            self.embedded = EmbeddedRedis(s.model_dir)
            env["REDIS_URL"] = self.embedded.url
        env[METRICS_DIR_ENV] = str(fresh_metrics_dir(s.model_dir, env.get(METRICS_DIR_ENV)))
        out = {"stdout": self.log_file, "stderr": subprocess.STDOUT} if self.log_file else {}
        # each child leads its own process group, so that stopping it also stops what it forked
        # (gunicorn's workers, the worker's job "horse", which a killed worker leaves running)
        self.children = [
            subprocess.Popen(gunicorn_command(s), env=env, start_new_session=True, **out),
            subprocess.Popen([sys.executable, "-m", "backend", "worker"], env=env, start_new_session=True, **out),
        ]
        return self

    def exited(self) -> subprocess.Popen | None:
        return next((c for c in self.children if c.poll() is not None), None)

    def __exit__(self, *exc) -> None:
        stop_process_groups(self.children, grace=15.0)
        if self.embedded is not None:
            self.embedded.close()


def rq_command(command: str, url: str, queue: str) -> str:
    """An `rq` command line that works against this service's Redis: jobs are JSON-serialized, and
    the embedded Redis listens on a unix socket under MODEL_DIR, not on a port."""
    return f"{Path(sys.executable).with_name('rq')} {command} --url {url} --serializer json {queue}"


def stop_process_groups(children: list[subprocess.Popen], grace: float) -> None:
    """SIGTERM each child (gunicorn and the RQ worker shut down gracefully on it), wait up to
    `grace` seconds, then SIGKILL each child's process group: a worker killed mid-job would
    otherwise leave its job's forked "horse" running (seen after stopping `eval --simulate`)."""
    for child in children:
        if child.poll() is None:
            child.send_signal(signal.SIGTERM)
    deadline = time.monotonic() + grace
    for child in children:
        try:
            child.wait(timeout=max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            child.kill()
            child.wait()
        try:
            os.killpg(child.pid, signal.SIGKILL)  # anything it forked that outlived it
        except (ProcessLookupError, PermissionError):
            pass


def exit_on_sigterm() -> None:
    """Turn SIGTERM into SystemExit, so that a `with Stack(...)` block unwinds and stops its
    children: by default SIGTERM ends this process at once and orphans gunicorn, the worker and
    the embedded Redis (seen with `eval --simulate`)."""
    def _exit(signum, _frame):
        raise SystemExit(128 + signum)

    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGTERM, _exit)


def serve(settings: Settings) -> int:
    stopping = {"signal": None}

    def _stop(signum, _frame):
        stopping["signal"] = signum

    signal.signal(signal.SIGINT, _stop)
    signal.signal(signal.SIGTERM, _stop)
    with Stack(settings) as stack:
        log.info("serving on %s (Ctrl-C stops web, worker and embedded Redis)", stack.url)
        if stack.embedded is not None:
            log.info("the jobs' queue: %s", rq_command("info", stack.embedded.url, settings.rq_queue_name))
        while stopping["signal"] is None:
            child = stack.exited()
            if child is not None:
                log.error("child %s exited with %s; stopping", child.args[:4], child.returncode)
                return child.returncode or 1
            time.sleep(0.3)
    return 0
