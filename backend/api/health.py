"""What /health reports: whether this process can serve predictions now and, if not, why.

Label Studio gives /health 1 s; on any non-200 it marks the backend Disconnected and skips
/predict silently, and an orchestrator restarts an unhealthy container. So /health answers 503
only for what stops every prediction: a model that failed to load, or a Redis that cannot be
reached (versions and ground truth live there). Redis is probed through its own client with a
short timeout, so a hung server cannot hold /health past Label Studio's second. A remote LLM
server's last failure is reported but stays a 200: the next /predict is what finds out that the
server is back, and Label Studio sends none to a backend it thinks is disconnected.
"""
from __future__ import annotations

import threading
import time

import redis

from ..engines.factory import EngineLoader


class LlmStatus:
    """The last failure of the LLM while predicting, until a prediction succeeds again."""

    def __init__(self):
        self._lock = threading.Lock()
        self._failure: tuple[float, str] | None = None

    def failed(self, message: str) -> None:
        with self._lock:
            self._failure = (time.time(), message)

    def succeeded(self) -> None:
        with self._lock:
            self._failure = None

    def last_failure(self) -> dict | None:
        with self._lock:
            if self._failure is None:
                return None
            at, message = self._failure
        return {"message": message, "seconds_ago": round(time.time() - at, 1)}


class ServiceHealth:
    def __init__(self, loader: EngineLoader, probe: redis.Redis, model_id: str, llm: LlmStatus):
        self.loader = loader
        self.probe = probe
        self.model_id = model_id
        self.llm = llm

    def _redis_error(self) -> str | None:
        try:
            self.probe.ping()
        except redis.RedisError as exc:
            return f"{type(exc).__name__}: {exc}"
        return None

    def report(self) -> tuple[dict, int]:
        """The /health body and its status code (200, or 503 when predictions cannot be served)."""
        redis_error = self._redis_error()
        down = redis_error is not None or self.loader.state == "failed"
        body = {
            "status": "DOWN" if down else "UP",
            "model_class": "LLMLabelingBackend",
            "model": self.model_id,
            "model_state": self.loader.state,
            "model_error": self.loader.error,
            "redis": redis_error or "ok",
            "llm_last_failure": self.llm.last_failure(),
        }
        return body, 503 if down else 200
