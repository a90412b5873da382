"""`serve`: one command that starts everything a fresh machine needs and stops it all on Ctrl-C.

Order: the model is assembled (so the web workers only load it), the embedded Redis starts when
no REDIS_URL/REDIS_HOST is set, then gunicorn and one RQ worker run as child processes.
"""
from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
import time

from .engines.factory import prepare_model
from .settings import Settings
from .store.redis import EmbeddedRedis, external_url

log = logging.getLogger(__name__)


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
        "--no-control-socket",
        "backend.wsgi:app",
    ]


def serve(settings: Settings) -> int:
    if settings.llm_backend == "llamacpp":
        prepare_model(settings)
    embedded = None
    env = dict(os.environ, HOST=settings.host, PORT=str(settings.port), MODEL_DIR=str(settings.model_dir))
    if external_url(settings) is None:
        embedded = EmbeddedRedis(settings.model_dir)
        env["REDIS_URL"] = embedded.url
    children = [
        subprocess.Popen(gunicorn_command(settings), env=env),
        subprocess.Popen([sys.executable, "-m", "backend", "worker"], env=env),
    ]
    log.info("serving on http://%s:%d (Ctrl-C stops web, worker and embedded Redis)", settings.host, settings.port)
    stopping = {"signal": None}

    def _stop(signum, _frame):
        stopping["signal"] = signum

    signal.signal(signal.SIGINT, _stop)
    signal.signal(signal.SIGTERM, _stop)
    code = 0
    try:
        while stopping["signal"] is None:
            exited = [c for c in children if c.poll() is not None]
            if exited:
                code = exited[0].returncode or 1
                log.error("child %s exited with %s; stopping", exited[0].args[:4], exited[0].returncode)
                break
            time.sleep(0.3)
    finally:
        for child in children:
            if child.poll() is None:
                child.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + 15
        for child in children:
            try:
                child.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                child.kill()
        if embedded is not None:
            embedded.close()
    return code
