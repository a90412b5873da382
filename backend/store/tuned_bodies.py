"""The fine-tuned top layers of the embedding body that a version's head reads, in Redis.

Every web replica and worker rebuilds a fine-tuned body from the bundled MiniLM and these
tensors (labeling/tuned_body.py), so they live where the versions do, not on one machine's disk.
Keyed by a digest of the tensors: a version and the refits that did not change them share one
entry. Kept without expiry while a version that may be served again names them
(refinement/body_retention.py drops the others).
"""
from __future__ import annotations

import redis

from .redis import key


class TunedBodies:
    def __init__(self, conn: redis.Redis):
        self.conn = conn

    @staticmethod
    def _key(name: str) -> str:
        return key("tuned-body", name)

    def save(self, name: str, top: int, tensors: bytes) -> None:
        self.conn.hset(self._key(name), mapping={"top": top, "tensors": tensors})

    def has(self, name: str) -> bool:
        return bool(self.conn.exists(self._key(name)))

    def drop(self, names: list[str]) -> None:
        if names:
            self.conn.delete(*(self._key(name) for name in names))

    def load(self, name: str) -> tuple[int, bytes] | None:
        """(how many top layers, their safetensors bytes), or None when it is not stored."""
        stored = self.conn.hgetall(self._key(name))
        if not stored:
            return None
        return int(stored[b"top"]), stored[b"tensors"]
