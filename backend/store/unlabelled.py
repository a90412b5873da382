"""Texts of a project's tasks seen by /predict, kept per data field for the zero-label template
choice (labeling/templates.py) before any annotation exists.

A sample, not an archive: the first MAX_TEXTS distinct texts of each field, deduplicated by
hash (Label Studio asks for the same tasks again and again), kept 30 days. The texts are the
project's own task data, which the ground truth store keeps anyway once they are annotated.
"""
from __future__ import annotations

import hashlib

import redis

from .redis import key

MAX_TEXTS = 256
TTL_S = 30 * 24 * 3600


class UnlabelledTexts:
    def __init__(self, conn: redis.Redis, project: int):
        self.conn = conn
        self.project = project

    def _key(self, field: str) -> str:
        return key("project", self.project, "unlabelled", field)

    def add(self, field: str, texts: list[str]) -> tuple[int, int]:
        """Keep the new distinct texts while there is room; (count before, count after)."""
        k = self._key(field)
        before = int(self.conn.hlen(k))
        room = MAX_TEXTS - before
        if room <= 0 or not texts:
            return before, before
        fresh = {hashlib.sha256(t.encode("utf-8", "surrogatepass")).hexdigest()[:20]: t for t in texts}
        pipe = self.conn.pipeline(transaction=False)
        for digest, text in list(fresh.items())[:room]:
            pipe.hsetnx(k, digest, text)
        pipe.expire(k, TTL_S)
        pipe.execute()
        return before, int(self.conn.hlen(k))

    def count(self, field: str) -> int:
        return int(self.conn.hlen(self._key(field)))

    def texts(self, field: str) -> list[str]:
        """Every kept text of `field`, in a stable order (by hash: no order of arrival to leak)."""
        raw = self.conn.hgetall(self._key(field))
        return [raw[d].decode("utf-8", "surrogatepass") for d in sorted(raw)]
